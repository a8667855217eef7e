"""``kneescope export SERIES --format slicer [--labels | --run NAME] [-o DIR]``: the series'
image and a label map (the catalog's, or the one run NAME's segmentation wrote) as one folder
that 3D Slicer and ITK-SNAP open in one step (:mod:`kneescope.io.viewer_bundle`); default
DIR: ``WORKSPACE/exports/<series stem>_slicer/``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kneescope.cli.common import emit
from kneescope.cli.export_request import ExportRequest
from kneescope.errors import InputError, NotFoundError


def export_slicer(request: ExportRequest) -> None:
    """Export as asked in ``request`` (``out`` is the folder to create)."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.output_names import series_stem
    from kneescope.catalog.queries import get_series
    from kneescope.catalog.schema import STATUS_OK
    from kneescope.catalog.volumes import read_image_file, read_series
    from kneescope.core.labels import KNEE_LABELS
    from kneescope.io.viewer_bundle import write_viewer_bundle

    if request.dataset_id is not None:
        raise InputError("--dataset-id applies to --format nnunet")
    if request.run is not None and request.labels:
        raise InputError("give --labels (the catalog's label map) or --run NAME, not both")
    if request.series is None:
        raise InputError("--format slicer needs SERIES (a catalog id; see `kneescope catalog`)")
    cat = Catalog.for_workspace(request.workspace, create=False)
    try:
        record = get_series(cat, request.series)
    finally:
        cat.close()
    stem = series_stem(record)
    folder = request.out or request.workspace.exports_dir / f"{stem}_slicer"
    folder = folder.expanduser().absolute()
    if record.status != STATUS_OK:
        raise InputError(
            f"series {record.id} failed at ingest ({record.reason}); fix its files and re-run "
            "`kneescope ingest`"
        )
    names: dict[int, str] = dict(KNEE_LABELS.labels)
    if request.run is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", request.run):
            raise InputError(f"--run {request.run!r} is not a run name (see `kneescope status`)")
        label_path = run_label_map(request.workspace.runs_dir / request.run, record)
        names = _recorded_names(label_path) or names
        source = f"run {request.run}"
    else:
        if not record.label_paths:
            raise NotFoundError(
                f"series {record.id} has no label map in the catalog; ingest one, or give "
                "--run NAME to export a run's segmentation"
            )
        label_path = Path(record.label_paths[0])
        source = "catalog"
    if folder.exists() and not request.overwrite:
        raise InputError(f"--out {folder} exists; pass --overwrite to replace it")
    if request.out is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
    image = read_series(record.path, record.kind)
    labels = read_image_file(label_path)
    bundle = write_viewer_bundle(folder, image, labels, names, stem, overwrite=request.overwrite)
    payload = {
        "series_id": record.id,
        "labels_from": source,
        "label_map": str(label_path),
        "folder": str(bundle.folder),
        "image": str(bundle.image),
        "segmentation": str(bundle.segmentation),
        "itksnap_workspace": str(bundle.itksnap_workspace),
        "itksnap_labels": str(bundle.itksnap_labels),
        "slicer_script": str(bundle.slicer_script),
        "segments": {str(v): n for v, n in sorted(names.items())},
    }
    emit(payload, request.as_json, lambda console: _render(console, payload))


def run_label_map(run_dir: Path, record: Any) -> Path:
    """The label map that the run in ``run_dir`` wrote for the series ``record`` (its results
    table's ``file_segment_labels`` of the item whose id, series id or UID is the series).

    Raises:
        NotFoundError: no such run, no results table, the series not in it, or no label map.
    """
    from kneescope.cohort.results_table import read_run_results

    table = read_run_results(run_dir)
    if "file_segment_labels" not in table.columns:
        raise NotFoundError(
            f"run {run_dir.name!r} wrote no label maps (its pipeline has no segment step); "
            "export the catalog's label map with --labels"
        )
    wanted = {f"series-{record.id}", str(record.id), str(record.series_uid)}
    rows = table[
        table["item_id"].astype(str).isin(wanted)
        | (table["series"].astype(str).isin(wanted) if "series" in table.columns else False)
    ]
    paths = [str(p) for p in rows["file_segment_labels"] if isinstance(p, str) and p]
    if not paths:
        raise NotFoundError(
            f"run {run_dir.name!r} holds no label map of series {record.id}; see "
            f"`kneescope status --run {run_dir.name}`"
        )
    path = Path(paths[0])
    if not path.is_file():
        raise NotFoundError(f"the run's label map {path} is gone; re-run `kneescope run`")
    return path


def _recorded_names(label_path: Path) -> dict[int, str] | None:
    """Label names recorded in a label map's JSON sidecar (``labels``), if any."""
    from kneescope.io.sidecar import read_sidecar

    fields = read_sidecar(label_path) or {}
    labels = fields.get("labels")
    if not isinstance(labels, dict):
        return None
    try:
        return {int(v): str(n) for v, n in labels.items()}
    except (TypeError, ValueError):
        return None


def _render(console: Any, payload: dict[str, Any]) -> None:
    console.print(
        f"wrote series {payload['series_id']} with the {payload['labels_from']}'s label map "
        f"to {payload['folder']}",
        markup=False,
    )
    console.print(
        f"3D Slicer: Slicer --python-script {payload['slicer_script']} (or drag "
        f"{Path(payload['image']).name} and {Path(payload['segmentation']).name} onto it)",
        markup=False,
    )
    console.print(f"ITK-SNAP: itksnap -w {payload['itksnap_workspace']}", markup=False)
