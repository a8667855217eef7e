"""Fit or apply the score to runs' results, write its files and store it in the catalog: the
one path the ``oa_score`` cohort step and ``kneescope score`` share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kneescope.capabilities.oa_score.model_file import ScoreModel
from kneescope.capabilities.oa_score.outputs import (
    CATALOG_SUFFIX,
    options_hash,
    store_scores,
    write_outputs,
)
from kneescope.capabilities.oa_score.score import (
    ScoreOptions,
    ScoreResult,
    apply_score,
    assemble,
    fit_score,
    reader_grades,
)
from kneescope.io.folder_writer import Writer

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.catalog.view import CatalogView


@dataclass(frozen=True)
class ScoreOutcome:
    """What :func:`score_runs` did.

    Attributes:
        result: the scores, model and figures.
        files: output name -> absolute path.
        catalog_run: the catalog run the values were stored under ("" when not stored).
        values_stored: how many values went to the catalog.
        fitted: True for a fit, False when a saved model was applied.
    """

    result: ScoreResult
    files: dict[str, str]
    catalog_run: str
    values_stored: int
    fitted: bool

    def to_json(self) -> dict[str, Any]:
        from kneescope.io.folder_writer import json_ready

        return json_ready(
            {
                "mode": "fit" if self.fitted else "apply",
                **self.result.summary,
                "coefficients_per_sd": {
                    c["feature"]: c["coefficient_per_sd"] for c in self.result.coefficients
                },
                "files": self.files,
                "catalog_run": self.catalog_run,
                "values_stored": self.values_stored,
            }
        )


def score_runs(
    tables: Sequence[pd.DataFrame],
    catalog: CatalogView | None,
    write: Writer,
    *,
    run: str,
    run_dir: Path,
    options: ScoreOptions,
    model: ScoreModel | None = None,
    model_hash: str = "",
    store: bool = True,
) -> ScoreOutcome:
    """Fit (``model`` None) or apply the score to ``tables``, write its files and store its
    values in the catalog as run ``<run>.oa_score``.

    Raises:
        InputError: bad input (no knees, no features, too few graded knees, a feature the
            model needs and the tables lack).
        CatalogError: the catalog refused the values (the files are written).
    """
    from kneescope.capabilities.oa_score.model_file import model_digest

    settings = {
        "features": list(options.features),
        "clinical": options.clinical,
        "folds": options.folds,
        "c": options.c,
        "model": model_hash,
    }
    if model is None:
        kf = assemble(tables, catalog, options)
        grades = reader_grades(catalog, kf.knees)
        result = fit_score(kf, grades, options, {"runs": run.split("+")})
    else:
        result = apply_score(model, tables, catalog)
    files = write_outputs(result, write, fitted=model is None)
    if model is None:
        model_hash = model_digest(Path(files["model"]))
    stored = 0
    catalog_run = ""
    if store and catalog is not None:
        from kneescope.catalog.database import Catalog

        with Catalog.open(
            catalog.url, create=False, root=Path(catalog.root) if catalog.root else None
        ) as writable:
            stored = store_scores(
                writable,
                run,
                run_dir,
                result,
                config_hash=options_hash(settings),
                model_hash=model_hash,
                features=result.matrix,
            )
        catalog_run = f"{run}{CATALOG_SUFFIX}"
    return ScoreOutcome(result, files, catalog_run, stored, model is None)
