"""``kneescope export SERIES --format dicom-seg [--labels | --run NAME]``: the series' label
map as a DICOM Segmentation that references the series' DICOM instances (docs/dicom.md).

Without ``--run`` the catalog's label map of the series is exported (recorded as a manual
segmentation); with ``--run NAME`` the label map that run's ``segment`` step wrote for the
series (recorded as automatic, with the model's name, kneescope's version and the model
hash).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kneescope.cli.export_request import ExportRequest
from kneescope.errors import InputError, NotFoundError
from kneescope.io.dicom_seg import SegAlgorithm

LABELS_COLUMN = "file_segment_labels"
"""The results-table column with the label map a run's segment step wrote."""


def export_dicom_seg(request: ExportRequest) -> None:
    """Export as asked in ``request`` (SERIES is set: cmd_export checks it)."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.export_dicom_seg import export_dicom_seg as export
    from kneescope.catalog.queries import get_series
    from kneescope.cli.common import emit

    if request.dataset_id is not None:
        raise InputError("--dataset-id applies to --format nnunet")
    if request.labels and request.run is not None:
        raise InputError("give --labels (the catalog's label map) or --run NAME, not both")
    assert request.series is not None
    ws = request.workspace
    cat = Catalog.for_workspace(ws, create=False)
    try:
        label_path = None
        algorithm = None
        if request.run is not None:
            record = get_series(cat, request.series)
            label_path, algorithm = run_label_map(
                ws.runs_dir / request.run, record.id, record.series_uid
            )
        result = export(
            cat,
            request.series,
            request.out,
            label_path=label_path,
            algorithm=algorithm,
            default_dir=ws.exports_dir,
            overwrite=request.overwrite,
        )
    finally:
        cat.close()
    emit(result.to_json(), request.as_json, lambda console: _render(console, result))


def run_label_map(
    run_dir: Path, series_id: int, series_uid: str | None
) -> tuple[Path, SegAlgorithm]:
    """The label map run ``run_dir`` wrote for a series, and the algorithm that made it.

    Raises:
        NotFoundError: no such run or results table, or the series is not in it.
        InputError: the run has no segmentation outputs.
    """
    row, algorithm = run_row(run_dir, series_id, series_uid)
    value = row.get(LABELS_COLUMN)
    if not isinstance(value, str) or not value:
        raise InputError(
            f"run {run_dir.name!r} wrote no label map for series {series_id} (no segment "
            "step); give a run that segmented the series, or --labels"
        )
    path = Path(value)
    return (path if path.is_absolute() else run_dir / path), algorithm


def run_row(run_dir: Path, series_id: int, series_uid: str | None) -> tuple[Any, SegAlgorithm]:
    """The results row (a pandas Series) of a series in run ``run_dir``, and the algorithm
    (the run's segmentation model, kneescope version, model hash) behind it.

    Raises:
        NotFoundError: no such run or results table, or the series is not in it.
    """
    from kneescope import __version__
    from kneescope.cohort.results_table import read_run_results

    table = read_run_results(run_dir)
    hits = table[
        (table["item_id"].astype(str) == f"series-{series_id}")
        | (table["series"].astype(str) == str(series_uid or "-"))
    ]
    if hits.empty:
        raise NotFoundError(
            f"run {run_dir.name!r} has no result for series {series_id}; see "
            f"`kneescope results --run {run_dir.name}`"
        )
    row = hits.iloc[-1]
    version = str(row.get("kneescope_version") or __version__)
    parameters = {}
    if isinstance(row.get("model_hash"), str) and row["model_hash"]:
        parameters["model_hash"] = str(row["model_hash"])
    parameters["run"] = run_dir.name
    return row, SegAlgorithm(
        kind="AUTOMATIC",
        name=_model_name(run_dir),
        version=version,
        parameters=parameters,
    )


def _model_name(run_dir: Path) -> str:
    """The segment step's model (file stem) from the run's config.json, else ``kneescope``."""
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        for step in config["config"]["steps"]:
            if step.get("name") == "segment":
                model = (step.get("options") or {}).get("model")
                if model:
                    return Path(str(model)).stem
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "kneescope"


def _render(console: Any, result: Any) -> None:
    names = ", ".join(result.segments.values())
    console.print(
        f"wrote DICOM SEG of series {result.series_id} to {result.path} "
        f"({len(result.segments)} segments: {names}; {result.n_frames} frames over "
        f"{result.n_source_instances} source slices; {result.compression}, "
        f"{result.size_bytes / 1e6:.2f} MB)",
        markup=False,
    )
