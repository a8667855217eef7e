"""``kneescope catalog``: list, filter and summarise the cataloged series."""

from __future__ import annotations

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
    workspace_dir: WorkspaceOpt = None,
    catalog_url: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List cataloged series (filtered), or summarise the catalog with --summary."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.queries import SeriesFilter, list_series, summarize

    ws = workspace(workspace_dir, catalog_url)
    cat = Catalog.for_workspace(ws, create=False)
    try:
        if summary:
            result = summarize(cat)
            emit(result.to_json(), as_json, lambda console: render_summary(console, result))
            return
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
    emit([r.to_json() for r in rows], as_json, lambda console: render_series(console, rows))


def render_series(console: Any, rows: list[Any]) -> None:
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
    console.print(f"{len(rows)} series")


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
