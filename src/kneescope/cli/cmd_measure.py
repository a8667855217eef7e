"""``kneescope measure``: image biomarkers of knee label maps, one row per knee."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr
from kneescope.errors import InputError, KneescopeError

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
            metavar="LABELMAP",
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
    labels_scheme: Annotated[
        str,
        typer.Option(
            "--labels",
            help="The label scheme the label maps are written in: kneescope (1-9), oai-zib "
            "(1 femur, 2 femoral cartilage, 3 tibia, 4 tibial cartilage, optional 5 patella, "
            "6 patellar cartilage), oaizib-cm (4/5 medial/lateral tibial cartilage), or a "
            ".json file mapping structure names to values. Structures a scheme lacks are "
            "reported as not labelled.",
            metavar="kneescope|oai-zib|oaizib-cm|FILE.json",
        ),
    ] = "kneescope",
    out: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            "--out",
            help="Write all biomarkers as a table, one row per knee; the file name says the "
            "format: .csv, .parquet or .json. Its folder must exist.",
            show_default=False,
        ),
    ] = None,
    maps_dir: Annotated[
        Path | None,
        typer.Option(
            "--maps",
            help="Folder for 2D thickness maps: per plate the map (.npy, mm) and a figure "
            "(.png: colour bar, mm scale, medial/lateral and anterior/posterior labels, title).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an existing output table and thickness maps."),
    ] = False,
    # --longitudinal / --precision: kneescope.cli.measure_longitudinal
    longitudinal: Annotated[
        bool,
        typer.Option(
            "--longitudinal",
            help="Change over time: the label maps are visits of one knee in time order (or "
            "one .csv listing knee, labelmap, visit for several knees); prints and writes each "
            "visit's thickness, its change from the first visit (mm and %), the smallest "
            "detectable change (SDC95) and, for several knees, the standardised response mean.",
        ),
    ] = False,
    precision_file: Annotated[
        Path | None,
        typer.Option(
            "--precision",
            help="With --longitudinal: rescan precision table (JSON, from "
            "benchmarks/biomarker_precision.py) for the SDC95. Default: kneescope's table "
            "measured on synthetic rescans.",
            show_default=False,
        ),
    ] = None,
    # end of the longitudinal options
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure cartilage thickness/volume/areas, menisci and QC flags of each label map."""
    labelmaps = [*(labelmap_args or []), *(input_opt or [])]
    if not labelmaps:
        raise InputError("nothing to measure: give label map files (LABELMAP... or -i FILE)")
    side_l = side.lower()
    if side_l not in ("right", "left", "auto"):
        raise InputError(f"--side must be right, left or auto, got {side!r}")
    scheme = _label_scheme(labels_scheme)
    # every output checked before any work: format, folder, nothing replaced unasked
    if out is not None:
        _check_table_output(out, overwrite)
    if maps_dir is not None:
        _check_maps_output(labelmaps, maps_dir, overwrite)
    if longitudinal:  # change over visits: kneescope.cli.measure_longitudinal
        from kneescope.cli.measure_longitudinal import run_longitudinal

        if maps_dir is not None and any(p.suffix.lower() == ".csv" for p in labelmaps):
            raise InputError(
                "--maps with a visit list: the visits' maps could overwrite each other; "
                "give the label maps of one knee, or leave out --maps"
            )

        def measure_one(path: Path) -> dict[str, Any]:
            return _measure_one(path, side_l, maps_dir, scheme)

        run_longitudinal(labelmaps, measure_one, out, overwrite, precision_file, as_json)
        return
    if precision_file is not None:
        raise InputError("--precision is used with --longitudinal only; add --longitudinal")
    rows: list[dict[str, Any]] = []
    failures: list[tuple[Path, KneescopeError]] = []
    for path in labelmaps:
        try:
            row = _measure_one(path, side_l, maps_dir, scheme)
        except KneescopeError as exc:
            if len(labelmaps) == 1:
                raise
            failures.append((path, exc))
            said = f"failed: {exc}" if str(path) in str(exc) else f"failed {path}: {exc}"
            stderr().print(said, markup=False, highlight=False, soft_wrap=True)
            continue
        rows.append(row)
    if out is not None and rows:
        _write_table(out, rows)
    clean = [{k: _json_value(v) for k, v in row.items()} for row in rows]
    emit(clean, as_json, lambda console: _render(console, rows))
    if failures:
        names = ", ".join(str(path) for path, _ in failures)
        kept = f"; {out} holds the {len(rows)} measured" if out is not None and rows else ""
        raise KneescopeError(
            f"{len(failures)} of {len(labelmaps)} label maps could not be measured ({names})"
            f"{kept}; fix or leave out those files and rerun"
        )


def _label_scheme(spec: str) -> Any:
    """The :class:`~kneescope.biomarkers.label_schemes.MeasureScheme` ``--labels`` names."""
    from kneescope.biomarkers.label_schemes import resolve_scheme

    return resolve_scheme(spec)


def _measure_one(path: Path, side: str, maps_dir: Path | None, scheme: Any) -> dict[str, Any]:
    """Read, check and measure one label map written in ``scheme``; its table row. Raises
    kneescope errors."""
    from kneescope.biomarkers.label_schemes import measure_labelled
    from kneescope.io.colour_table import label_map_stem
    from kneescope.io.readers import read_volume

    try:
        volume = read_volume(path)
    except OSError as exc:  # a reader that let one through: still this input's failure only
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    result = measure_labelled(
        volume,
        scheme,
        side,  # type: ignore[arg-type]
        with_maps=maps_dir is not None,
        source=str(path),
    )
    if maps_dir is not None:
        from kneescope.reports.thickness_figure import PLATE_TITLES, write_plate_figure

        stem = label_map_stem(path)
        for plate_map in result.maps.values():
            npy = plate_map.save(maps_dir, stem)
            words = PLATE_TITLES.get(plate_map.plate, plate_map.plate)
            write_plate_figure(
                plate_map,
                npy.with_suffix(".png"),
                title=f"{stem} ({result.side} knee): {words} thickness",
            )
    told = "side unverified" if result.qc.get("qc_orientation_unknown") else "knee"
    qc = "QC ok" if result.qc["qc_ok"] else "QC flags raised"
    stderr().print(
        f"measured {path} ({result.side} {told}, {qc})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return {"labelmap": str(path), **result.as_row()}


def _check_table_output(out: Path, overwrite: bool) -> None:
    """Refuse an unknown table format, a missing folder, an existing file without
    ``overwrite``."""
    _table_format(out)
    if out.is_dir():
        raise InputError(f"--output {out} is a folder; give a file name such as {out}/meas.csv")
    if not out.parent.is_dir():
        raise InputError(f"--output {out}: folder {out.parent} does not exist; create it first")
    if out.exists() and not overwrite:
        raise InputError(f"--output {out} exists; pass --overwrite to replace it")


def _check_maps_output(paths: list[Path], maps_dir: Path, overwrite: bool) -> None:
    """Refuse inputs whose thickness maps would overwrite each other (same file stem), and
    maps already in ``maps_dir`` without ``overwrite``."""
    from kneescope.core.labels import CARTILAGE_PLATES
    from kneescope.io.colour_table import label_map_stem

    seen: dict[str, Path] = {}
    for path in paths:
        stem = label_map_stem(path)
        if stem in seen and seen[stem] != path:
            raise InputError(
                f"{seen[stem]} and {path} would write the same thickness maps ({stem}_*); "
                "rename one, or measure them with separate --maps folders"
            )
        seen[stem] = path
        if overwrite:
            continue
        for plate in CARTILAGE_PLATES:
            for suffix in (".npy", ".png"):
                existing = maps_dir / f"{stem}_{plate}_thickness{suffix}"
                if existing.exists():
                    raise InputError(
                        f"--maps {maps_dir} already holds {existing.name}; pass --overwrite "
                        "to replace the maps, or choose another folder"
                    )


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".json": "json"}


def _table_format(path: Path) -> str:
    """The table format that ``path``'s suffix names; refuses any other suffix."""
    fmt = _TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        shown = path.suffix or "no suffix"
        raise InputError(
            f"--output {path}: cannot write a {shown} table; name it .csv (opens in any "
            "spreadsheet), .parquet or .json"
        )
    return fmt


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` atomically as CSV (spreadsheet-safe, LF, NaN empty), Parquet (NaN
    null) or JSON (a list of objects, NaN null), by ``path``'s suffix."""
    import json

    from kneescope.io.atomic import atomic_write_path
    from kneescope.io.csv_table import table_columns, write_csv_table

    fmt = _table_format(path)
    if fmt == "csv":
        write_csv_table(path, rows)
    elif fmt == "parquet":
        import pandas as pd

        frame = pd.DataFrame.from_records(rows, columns=table_columns(rows))
        with atomic_write_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    else:
        clean = [{k: _json_value(v) for k, v in row.items()} for row in rows]
        text = json.dumps(clean, indent=1, allow_nan=False) + "\n"
        with atomic_write_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")


def _render(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="thickness mean (mm) per plate, meniscal extrusion (mm); all in --output")
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
        raised = [
            k[3:]
            for k, v in row.items()
            if k.startswith("qc_") and k not in ("qc_ok", "qc_reasons") and v
        ]
        qc = "ok" if row.get("qc_ok") else ", ".join(raised) or "check"
        table.add_row(Path(row["labelmap"]).name, row["side"], *cells, qc)
    console.print(table)
