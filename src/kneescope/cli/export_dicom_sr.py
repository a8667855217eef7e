"""``kneescope export SERIES --format dicom-sr --run NAME``: the biomarkers run NAME measured
for SERIES as a DICOM SR measurement report (TID 1500) in the series' study (docs/dicom.md).

Every numeric biomarker column the ``measure`` step declares (units mm, mm2, mm3, %, 1; QC
counts left out) with a finite value in the run's row for SERIES becomes one measurement,
grouped by the structure its name starts with (the whole knee otherwise).
"""

from __future__ import annotations

import math
from typing import Any

from kneescope.cli.export_request import ExportRequest
from kneescope.errors import InputError, NotFoundError
from kneescope.io.dicom_sr import UCUM_UNITS, Biomarker

STRUCTURE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("femoral_", "femoral_cartilage"),
    ("medial_tibial_", "medial_tibial_cartilage"),
    ("lateral_tibial_", "lateral_tibial_cartilage"),
    ("patellar_", "patellar_cartilage"),
    ("medial_meniscus_", "medial_meniscus"),
    ("lateral_meniscus_", "lateral_meniscus"),
    ("femur_", "femur"),
    ("tibia_", "tibia"),
    ("patella_", "patella"),
)
"""Result column prefix -> the structure its biomarker belongs to (first match wins)."""


def structure_of(column: str) -> str | None:
    """The kneescope structure a biomarker column belongs to, or None (the whole knee)."""
    return next((s for prefix, s in STRUCTURE_PREFIXES if column.startswith(prefix)), None)


def biomarkers_of(row: Any) -> list[Biomarker]:
    """The reportable biomarkers of one results row (a pandas Series)."""
    from kneescope.capabilities.biomarkers.results import MEASURE_RESULTS

    out = []
    for column in MEASURE_RESULTS:
        if column.unit not in UCUM_UNITS or column.name.startswith("qc_"):
            continue
        if column.name not in row.index or column.kind not in ("float", "int"):
            continue
        try:
            value = float(row[column.name])
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value):
            continue
        out.append(
            Biomarker(
                name=column.name,
                value=value,
                unit=column.unit,
                description=column.description,
                structure=structure_of(column.name),
            )
        )
    return out


def export_dicom_sr(request: ExportRequest) -> None:
    """Export as asked in ``request`` (SERIES is set: cmd_export checks it)."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.export_dicom_seg import dicom_source_folder
    from kneescope.catalog.output_names import series_stem
    from kneescope.catalog.queries import get_series
    from kneescope.cli.common import emit
    from kneescope.cli.export_dicom_seg import run_row
    from kneescope.io.dicom_sr import write_measurement_report

    if request.run is None:
        raise InputError("--format dicom-sr needs --run NAME (the run that measured SERIES)")
    if request.labels or request.dataset_id is not None:
        raise InputError("--labels and --dataset-id do not apply to --format dicom-sr")
    assert request.series is not None
    ws = request.workspace
    cat = Catalog.for_workspace(ws, create=False)
    try:
        record = get_series(cat, request.series)
    finally:
        cat.close()
    run_dir = ws.runs_dir / request.run
    row, algorithm = run_row(run_dir, record.id, record.series_uid)
    biomarkers = biomarkers_of(row)
    if not biomarkers:
        raise NotFoundError(
            f"run {request.run!r} has no biomarkers for series {record.id} (no measure step, "
            "or nothing measurable); run a pipeline with a measure step"
        )
    create_folder = request.out is None
    out = request.out or ws.exports_dir / f"{series_stem(record)}_sr.dcm"
    out = out.expanduser().absolute()
    if not out.name.lower().endswith(".dcm"):
        raise InputError(f"--output {out.name} does not end in .dcm; give a .dcm file name")
    if not create_folder and not out.parent.is_dir():
        raise InputError(f"--output {out}: folder {out.parent} does not exist; create it first")
    if out.exists() and not request.overwrite:
        raise InputError(f"--output {out} exists; pass --overwrite to replace it")
    source = dicom_source_folder(record)
    side = record.side if record.side in ("right", "left") else None
    if create_folder:
        out.parent.mkdir(parents=True, exist_ok=True)
    written = write_measurement_report(
        biomarkers,
        source,
        out,
        algorithm=algorithm,
        side=side,
        series_description=" ".join(
            p for p in ("kneescope biomarkers", record.subject, record.visit, side) if p
        ),
        overwrite=request.overwrite,
    )
    result = {
        "series_id": record.id,
        "series_uid": written.source_series_uid,
        "run": request.run,
        "path": str(written.path),
        "measurements": written.n_measurements,
        "groups": written.groups,
        "size_bytes": written.size_bytes,
        "sop_instance_uid": written.sop_instance_uid,
        "sr_series_uid": written.series_instance_uid,
        "side": side,
        "algorithm": f"{algorithm.name} {algorithm.version}",
    }
    emit(result, request.as_json, lambda console: _render(console, result))


def _render(console: Any, result: dict[str, Any]) -> None:
    console.print(
        f"wrote DICOM SR of series {result['series_id']} to {result['path']} "
        f"({result['measurements']} measurements of run {result['run']} in "
        f"{len(result['groups'])} groups; {result['size_bytes'] / 1e6:.2f} MB)",
        markup=False,
    )
