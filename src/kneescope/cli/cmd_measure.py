"""``kneescope measure``: image biomarkers of knee label maps, one row per knee."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr
from kneescope.errors import InputError

_SUMMARY_COLUMNS = (
    ("femoral_cartilage_thickness_mean_mm", "FC"),
    ("medial_tibial_cartilage_thickness_mean_mm", "MT"),
    ("lateral_tibial_cartilage_thickness_mean_mm", "LT"),
    ("patellar_cartilage_thickness_mean_mm", "PC"),
    ("medial_meniscus_extrusion_mm", "MM ext"),
    ("lateral_meniscus_extrusion_mm", "LM ext"),
)


def measure(
    labelmap_args: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Label maps (NIfTI, MHA/NRRD, DICOM folder or Zarr) with kneescope labels.",
            show_default=False,
            metavar="[LABELMAP]...",
        ),
    ] = None,
    input_opt: Annotated[
        list[Path] | None,
        typer.Option(
            "--input",
            "-i",
            help="A label map to measure (repeat for several); adds to the LABELMAP arguments.",
            show_default=False,
        ),
    ] = None,
    side: Annotated[
        Literal["right", "left", "auto"],
        typer.Option(
            "--side",
            help="Knee side: right, left, or auto (from the file's header, else from the anatomy).",
            case_sensitive=False,
        ),
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            "--out",
            help="Write all biomarkers as a CSV table (one row per knee).",
            show_default=False,
        ),
    ] = None,
    maps_dir: Annotated[
        Path | None,
        typer.Option("--maps", help="Folder for 2D thickness maps (.npy and .png per plate)."),
    ] = None,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure cartilage thickness/volume/areas, menisci and QC flags of each label map."""
    labelmaps = [*(labelmap_args or []), *(input_opt or [])]
    if not labelmaps:
        raise InputError("nothing to measure: give label map files (LABELMAP... or -i FILE)")
    from kneescope.biomarkers import measure_knee
    from kneescope.io.readers import read_volume

    side_l = side.lower()
    if side_l not in ("right", "left", "auto"):
        raise InputError(f"--side must be right, left or auto, got {side!r}")
    rows: list[dict[str, Any]] = []
    for path in labelmaps:
        volume = read_volume(path)
        if not volume.is_label or volume.ndim != 3:
            raise InputError(
                f"{path}: expected a 3D integer label map, got {volume.ndim}D "
                f"{volume.array.dtype}; pass a segmentation, not an image"
            )
        result = measure_knee(volume, side_l, with_maps=maps_dir is not None)  # type: ignore[arg-type]
        rows.append({"labelmap": str(path), **result.as_row()})
        if maps_dir is not None:
            stem = _stem(path)
            for plate_map in result.maps.values():
                plate_map.save(maps_dir, stem)
        stderr().print(f"measured {path} ({result.side} knee)", markup=False, highlight=False)
    if out is not None:
        _write_csv(out, rows)
    clean = [{k: _json_value(v) for k, v in row.items()} for row in rows]
    emit(clean, as_json, lambda console: _render(console, rows))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    from kneescope.io.atomic import atomic_write_path

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if _json_value(v) is None else v for k, v in row.items()})


def _render(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="thickness mean (mm) per plate, meniscal extrusion (mm); all in --out")
    table.add_column("label map", overflow="fold")
    table.add_column("side")
    for _, title in _SUMMARY_COLUMNS:
        table.add_column(title, justify="right")
    table.add_column("QC", overflow="fold")
    for row in rows:
        cells = []
        for key, _ in _SUMMARY_COLUMNS:
            value = row.get(key, float("nan"))
            cells.append("-" if not math.isfinite(value) else f"{value:,.2f}")
        raised = [k[3:] for k, v in row.items() if k.startswith("qc_") and k != "qc_ok" and v]
        qc = "ok" if row.get("qc_ok") else ", ".join(raised) or "check"
        table.add_row(Path(row["labelmap"]).name, row["side"], *cells, qc)
    console.print(table)
