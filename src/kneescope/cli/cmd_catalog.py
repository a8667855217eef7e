"""``kneescope catalog``: list, filter and summarise the cataloged series and clinical values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def catalog(
    visit: Annotated[str | None, typer.Option("--visit", help="Visit code, e.g. V00 or 1.")] = None,
    side: Annotated[
        Literal["right", "left"] | None,
        typer.Option(
            "--side",
            help="Knee side.",
            case_sensitive=False,
        ),
    ] = None,
    sequence: Annotated[
        str | None,
        typer.Option(
            "--sequence",
            help="Sequence as cataloged: DESS, IW_TSE, T2_MAP, MPR, T1, FLASH, XR_PA, "
            "XR_FULL_LEG, ... (a manifest may add its own names; see `catalog --summary`).",
        ),
    ] = None,
    status: Annotated[
        Literal["ok", "failed"] | None,
        typer.Option(
            "--status",
            help="Series status: ok (readable) or failed (recorded with a reason).",
            case_sensitive=False,
        ),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            "--modality",
            help="DICOM modality as cataloged: MR, CR, DX, ... (see `catalog --summary`).",
        ),
    ] = None,
    kind: Annotated[
        Literal["mri", "radiograph", "unknown"] | None,
        typer.Option(
            "--kind",
            help="Kind of series: mri, radiograph or unknown.",
            case_sensitive=False,
        ),
    ] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Subject code.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Show at most this many series.", min=1)
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="Counts by status, kind, sequence and visit.")
    ] = False,
    clinical: Annotated[
        bool,
        typer.Option(
            "--clinical",
            help="List clinical variables (one row per subject, visit, side and variable) "
            "instead of series; filter with --subject, --visit, --side and --variable.",
        ),
    ] = False,
    variable: Annotated[
        str | None,
        typer.Option(
            "--variable",
            help="With --clinical: a variable name (XRKL, AGE) or a pattern with * and ? "
            "(WOMKP*); case is ignored.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Also write the listed rows (series or clinical values) to this CSV file. "
            "Its folder must exist.",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --output file.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog_url: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List cataloged series (filtered), clinical variables with --clinical, or summarise
    the catalog with --summary. Unknown filter values are refused with the valid ones."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.queries import (
        ClinicalFilter,
        SeriesFilter,
        clinical_values,
        list_series,
        summarize,
    )
    from kneescope.errors import InputError

    series_only = {
        "--sequence": sequence,
        "--status": status,
        "--modality": modality,
        "--kind": kind,
    }
    if clinical:
        given = [name for name, value in series_only.items() if value is not None]
        if given or summary:
            raise InputError(
                f"--clinical lists clinical values; {', '.join(given or ['--summary'])} "
                "applies to series only; filter clinical values with --subject, --visit, "
                "--side, --variable"
            )
    elif variable is not None:
        raise InputError("--variable filters clinical values; add --clinical")
    if output is not None:
        if summary:
            raise InputError("--output writes listed rows; it does not apply to --summary")
        _check_csv_output(output, overwrite)
    ws = workspace(workspace_dir, catalog_url)
    cat = Catalog.for_workspace(ws, create=False)
    try:
        if summary:
            result = summarize(cat)
            emit(result.to_json(), as_json, lambda console: render_summary(console, result))
            return
        if clinical:
            values = clinical_values(
                cat,
                ClinicalFilter(
                    subject=subject, visit=visit, side=side, variable=variable, limit=limit
                ),
            )
        else:
            where = SeriesFilter(
                subject=subject,
                visit=visit,
                side=side,
                sequence=sequence,
                status=status,
                modality=modality,
                kind=kind,
                limit=limit,
            )
            rows = list_series(cat, where)
    finally:
        cat.close()
    if clinical:
        if output is not None:
            _write_csv(output, values, list(CLINICAL_COLUMNS))
        emit(values, as_json, lambda console: render_clinical(console, values, output))
        return
    if output is not None:
        _write_csv(output, [_series_row(r) for r in rows], list(SERIES_COLUMNS))
    emit(
        [r.to_json() for r in rows],
        as_json,
        lambda console: render_series(console, rows, output),
    )


CLINICAL_COLUMNS = ("subject", "visit", "side", "variable", "value_text", "value_num")
"""Columns of ``catalog --clinical --output``."""
SERIES_COLUMNS = (
    "id",
    "subject",
    "visit",
    "side",
    "kind",
    "modality",
    "sequence",
    "plane",
    "description",
    "shape",
    "spacing_mm",
    "orientation",
    "status",
    "reason",
    "path",
    "label_paths",
    "store_key",
    "series_uid",
)
"""Columns of ``catalog --output`` (shape and spacing as 160x384x384, label paths ;-joined)."""


def _check_csv_output(path: Path, overwrite: bool) -> None:
    """Refuse a file name without .csv, a missing folder, an existing file without
    ``overwrite`` (before the catalog is opened)."""
    from kneescope.errors import InputError

    if path.suffix.lower() != ".csv":
        raise InputError(f"--output {path}: the catalog writes CSV; give a name ending in .csv")
    if path.is_dir():
        raise InputError(f"--output {path} is a folder; give a file name such as {path}/x.csv")
    if not path.parent.is_dir():
        raise InputError(f"--output {path}: folder {path.parent} does not exist; create it first")
    if path.exists() and not overwrite:
        raise InputError(f"--output {path} exists; pass --overwrite to replace it")


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    from kneescope.io.csv_table import write_csv_table

    write_csv_table(path, rows, columns)


def _series_row(r: Any) -> dict[str, Any]:
    row = {name: getattr(r, name) for name in SERIES_COLUMNS}
    row["shape"] = "x".join(str(n) for n in r.shape) if r.shape else None
    row["spacing_mm"] = "x".join(f"{s:g}" for s in r.spacing_mm) if r.spacing_mm else None
    row["label_paths"] = ";".join(r.label_paths) or None
    return row


def render_clinical(console: Any, values: list[dict[str, Any]], output: Path | None) -> None:
    """A rich table of clinical values (long format)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for name in ("subject", "visit", "side", "variable"):
        table.add_column(name, no_wrap=True)
    table.add_column("value", overflow="fold")
    for v in values:
        cells = (v["subject"], v["visit"] or "-", v["side"] or "-", v["variable"], v["value_text"])
        table.add_row(*(escape(str(c)) for c in cells))
    console.print(table)
    console.print(f"{len(values)} clinical values" + (f", written to {output}" if output else ""))


def render_series(console: Any, rows: list[Any], output: Path | None = None) -> None:
    """A rich table of SeriesRecords (failed ones show their reason)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for name in ("id", "subject", "visit", "side", "sequence"):
        table.add_column(name, no_wrap=True)
    for name in ("shape", "spacing mm", "status"):
        table.add_column(name, overflow="fold")  # wrap long values, never cut them
    for r in rows:
        shape = "x".join(str(n) for n in r.shape) if r.shape else "-"
        spacing = "x".join(f"{s:.3g}" for s in r.spacing_mm) if r.spacing_mm else "-"
        status = r.status if r.status == "ok" else f"[red]{r.status}[/]: {escape(r.reason or '')}"
        table.add_row(
            str(r.id),
            r.subject or "-",
            r.visit or "-",
            r.side or "-",
            r.sequence or r.kind,
            shape,
            spacing,
            status,
        )
    console.print(table)
    console.print(f"{len(rows)} series" + (f", written to {output}" if output else ""))


def render_summary(console: Any, s: Any) -> None:
    """Entity counts and series counts by status, kind, sequence and visit."""
    from rich.table import Table

    console.print(
        f"{s.subjects} subjects, {s.visits} visits, {s.knees} knees, {s.series} series, "
        f"{s.label_maps} label maps, {s.clinical_values} clinical values, "
        f"{s.store_entries} converted"
    )
    for title, counts in (
        ("status", s.series_by_status),
        ("kind", s.series_by_kind),
        ("sequence", s.series_by_sequence),
        ("visit", s.series_by_visit),
    ):
        table = Table(title, "series")
        for key, n in counts.items():
            table.add_row(key, str(n))
        console.print(table)
