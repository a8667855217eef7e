"""What a score fit or application leaves behind: its files and its values in the catalog.

Files (one folder; the cohort step's ``RUN/cohort/oa_score/``, ``kneescope score``'s
``RUN/oa_score/`` or ``-o``):

* ``oa_scores.csv``: one row per knee-visit: subject, visit, side and the
  :data:`~.score.SCORE_COLUMNS`;
* ``oa_score_summary.json``: the figures (counts, out-of-fold Spearman with the reader's
  grade, AUC, Brier score, ECE), the features used and the ones dropped;
* fit only: ``oa_score_model.json`` (the model, plain JSON) and ``oa_score_model.md`` (its
  card), ``oa_coefficients.csv`` (coefficients per standard deviation);
* with reader grades: ``oa_reliability.csv`` and ``oa_reliability.png`` (calibration).

Catalog: each knee-visit's values are stored as the results of a run of their own, named
``<run>.oa_score`` (capability and step ``oa_score``, one item per knee-visit, item id
``<subject>_<visit>_<side>``), with their units and provenance: kneescope version, the
score's options hash (``config_hash``), the model file's hash (``model_hash``) and a digest
of the knee's features (``input_checksum``). ``kneescope results --run <run>.oa_score``
exports them. Storing again replaces them (never duplicates).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kneescope import __version__
from kneescope.capabilities.oa_score.features import KNEE_KEYS
from kneescope.capabilities.oa_score.model_file import model_card
from kneescope.capabilities.oa_score.score import (
    SCORE_COLUMNS,
    ScoreResult,
    save_reliability_figure,
)
from kneescope.io.folder_writer import Writer, json_ready

if TYPE_CHECKING:
    from kneescope.catalog.database import Catalog

CAPABILITY = "oa_score"
STEP = "oa_score"
CATALOG_SUFFIX = ".oa_score"
"""The catalog run of a run's scores is ``<run>.oa_score``."""

SCORES_FILE = "oa_scores.csv"
SUMMARY_FILE = "oa_score_summary.json"
MODEL_FILE = "oa_score_model.json"
CARD_FILE = "oa_score_model.md"
COEFFICIENTS_FILE = "oa_coefficients.csv"
RELIABILITY_CSV = "oa_reliability.csv"
RELIABILITY_PNG = "oa_reliability.png"
OUTPUT_FILES = (
    SCORES_FILE,
    SUMMARY_FILE,
    MODEL_FILE,
    CARD_FILE,
    COEFFICIENTS_FILE,
    RELIABILITY_CSV,
    RELIABILITY_PNG,
)


def _records(frame: Any) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def write_outputs(result: ScoreResult, write: Writer, *, fitted: bool) -> dict[str, str]:
    """Write the files of ``result`` (see the module docstring); returns name -> path."""
    from kneescope.io.csv_table import write_csv_table

    files: dict[str, str] = {}
    columns = [*KNEE_KEYS, *(c for c, _, _ in SCORE_COLUMNS)]
    rows = _records(result.scores.loc[:, columns])
    files["scores"] = write(SCORES_FILE, lambda tmp: write_csv_table(tmp, rows, columns))
    summary = json_ready(result.summary)
    if fitted:
        card = model_card(result.model, summary)
        files["model"] = write(MODEL_FILE, result.model.model_dump_json(indent=2) + "\n")
        files["card"] = write(CARD_FILE, card)
        coefficients = result.coefficients
        files["coefficients"] = write(
            COEFFICIENTS_FILE, lambda tmp: write_csv_table(tmp, coefficients)
        )
    if result.reliability:
        bins = result.reliability
        files["reliability"] = write(RELIABILITY_CSV, lambda tmp: write_csv_table(tmp, bins))
        ece = result.summary.get("ece_kl2_oof", result.summary.get("ece_kl2"))
        title = f"OA score, P(KL >= 2){' out-of-fold' if fitted else ''}: ECE {ece:.3f}"
        files["reliability_figure"] = write(
            RELIABILITY_PNG, lambda tmp: save_reliability_figure(bins, tmp, title)
        )
    files["summary"] = write(SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return files


def options_hash(options: dict[str, Any]) -> str:
    """16-hex digest of the score's options (its ``config_hash``)."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_scores(
    catalog: Catalog,
    run: str,
    run_dir: Path,
    result: ScoreResult,
    *,
    config_hash: str,
    model_hash: str,
    features: Any,
) -> int:
    """Store every knee-visit's score values in the catalog as run ``<run>.oa_score``
    (replacing its earlier values); returns the number of values stored.

    Args:
        catalog: the workspace catalog (opened for writing).
        run: the run whose results were scored (several joined: their names with ``+``).
        run_dir: the folder of the scores' files.
        result: the scores.
        config_hash: :func:`options_hash` of the options.
        model_hash: the model file's hash.
        features: ``(n, p)`` feature matrix in score order (its rows give the knees'
            input checksums).
    """
    from kneescope.catalog.results_store import RunRecord, ValueRecord, store_run_results

    now = datetime.now(UTC)
    scores = result.scores
    matrix = np.asarray(features, dtype=np.float64)
    record = RunRecord(
        name=f"{run}{CATALOG_SUFFIX}",
        run_dir=run_dir,
        started_at=now,
        finished_at=now,
        config_hash=config_hash,
        model_hash=model_hash,
        kneescope_version=__version__,
        pipeline={
            "oa_score": {"source_runs": run.split("+"), "features": list(result.model.features)}
        },
        items_done=len(scores),
        items_failed=0,
    )
    units = {
        name: (unit, "int" if name == "oa_fold" else "float") for name, unit, _ in SCORE_COLUMNS
    }

    def values() -> Any:
        for i, row in enumerate(scores.itertuples(index=False)):
            subject, visit, side = str(row.subject), str(row.visit), str(row.side)
            checksum = hashlib.sha256(matrix[i].tobytes()).hexdigest()[:16]
            for name, (unit, kind) in units.items():
                value = getattr(row, name)
                number = float(value)
                yield ValueRecord(
                    item_id=f"{subject}_{visit}_{side}",
                    subject=subject,
                    visit=visit,
                    side=side,
                    series="",
                    capability=CAPABILITY,
                    step=STEP,
                    name=name,
                    kind=kind,
                    value=None
                    if math.isnan(number)
                    else (int(number) if kind == "int" else number),
                    unit=unit,
                    input_checksum=checksum,
                    kneescope_version=__version__,
                    config_hash=config_hash,
                    model_hash=model_hash,
                    computed_at=now,
                )

    return store_run_results(catalog, record, values())
