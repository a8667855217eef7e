"""``kneescope results``: the catalog's run results, listed or exported across runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def results(
    runs: Annotated[
        list[str] | None,
        typer.Option(
            "--run",
            help="Export this run (repeat for several; default: every run in the catalog).",
            show_default=False,
        ),
    ] = None,
    capabilities: Annotated[
        list[str] | None,
        typer.Option(
            "--capability",
            help="Export only values of this capability, e.g. segmentation or biomarkers "
            "(repeat for several; default: all).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Literal["parquet", "csv"] | None,
        typer.Option(
            "--format",
            help="File format: parquet or csv (default: from the --output name, .csv or .parquet).",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the values to this file (its folder must exist). Without it, list "
            "the runs in the catalog.",
            show_default=False,
        ),
    ] = None,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="One row per run and item, one column per value (default: one row per "
            "value, with its unit).",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --output file.")
    ] = False,
    drop_rejected: Annotated[
        bool,
        typer.Option(
            "--drop-rejected",
            help="Leave out knees a reviewer rejected (kneescope qc import); by default they "
            "are exported with qc_review = reject.",
        ),
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the runs whose results are in the catalog, or export their per-item values
    (-o FILE) as Parquet or CSV, across runs, with each knee's QC review decision
    (qc_review, qc_reviewer, qc_reviewed_at, qc_review_note)."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.results_store import list_runs
    from kneescope.errors import InputError

    export_only = {
        "--capability": capabilities,
        "--format": fmt,
        "--wide": wide,
        "--overwrite": overwrite,
        "--drop-rejected": drop_rejected,
    }
    if output is None:
        given = [name for name, value in export_only.items() if value]
        if given:
            raise InputError(f"{', '.join(given)} applies to an export; add -o FILE")
    else:
        fmt = _check_output(output, fmt, overwrite)
    ws = workspace(workspace_dir, catalog)
    cat = Catalog.for_workspace(ws, create=False)
    try:
        if output is None or fmt is None:  # list the runs (fmt is set for every export)
            stored = list_runs(cat)
            if runs:
                _check_runs(runs, [r.name for r in stored])
                stored = [r for r in stored if r.name in runs]
            payload = [r.to_json() for r in stored]
            emit(payload, as_json, lambda console: render_runs(console, payload))
            return
        summary = export_results(
            cat, output, fmt, runs or (), capabilities or (), wide, drop_rejected
        )
    finally:
        cat.close()
    emit(summary, as_json, lambda console: render_export(console, summary))


def _check_output(
    path: Path, fmt: Literal["parquet", "csv"] | None, overwrite: bool
) -> Literal["parquet", "csv"]:
    """The format to write; refuses a missing folder or an existing file without
    ``overwrite`` (before the catalog is opened)."""
    from kneescope.errors import InputError

    if path.is_dir():
        raise InputError(
            f"--output {path} is a folder; give a file name such as {path}/results.{fmt or 'csv'}"
        )
    if not path.parent.is_dir():
        raise InputError(f"--output {path}: folder {path.parent} does not exist; create it first")
    if fmt is None:
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            fmt = "parquet"
        elif suffix == ".csv":
            fmt = "csv"
        else:
            raise InputError(
                f"--output {path}: cannot tell the format from the name; give --format "
                "parquet or csv (or a name ending in .parquet or .csv)"
            )
    if path.exists() and not overwrite:
        raise InputError(f"--output {path} exists; pass --overwrite to replace it")
    return fmt


def _check_runs(wanted: list[str], known: list[str]) -> None:
    from kneescope.errors import NotFoundError

    missing = [name for name in wanted if name not in known]
    if missing:
        raise NotFoundError(
            f"run {', '.join(repr(m) for m in missing)} not in the catalog's results "
            f"(stored: {', '.join(known) or 'none'}); run it first (kneescope run -c CONFIG)"
        )


def export_results(
    cat: Any,
    path: Path,
    fmt: str,
    runs: tuple[str, ...] | list[str],
    capabilities: tuple[str, ...] | list[str],
    wide: bool,
    drop_rejected: bool = False,
) -> dict[str, Any]:
    """Write the selected values to ``path`` with each knee's QC review columns (rejected
    knees left out with ``drop_rejected``); returns what was written (for --json)."""
    from kneescope.catalog.qc_reviews import REVIEW_COLUMNS, load_reviews
    from kneescope.catalog.results_store import (
        ITEM_COLUMNS,
        PROVENANCE_COLUMNS,
        TIDY_COLUMNS,
        select_values,
        wide_rows,
    )
    from kneescope.io.parquet_table import TableColumn

    reviews = load_reviews(cat)
    tidy = []
    rejected: set[tuple[str, str]] = set()
    for row in select_values(cat, runs, capabilities):
        row.update(reviews.columns(row, row["computed_at"]))
        if row["qc_review"] == "reject":
            rejected.add((row["run"], row["item_id"]))
            if drop_rejected:
                continue
        tidy.append(row)
    review_columns = [TableColumn(c) for c in REVIEW_COLUMNS]
    if wide:
        rows, values = wide_rows(tidy)
        first = {(r["run"], r["item_id"]): r for r in tidy}
        for row in rows:
            source = first[(row["run"], row["item_id"])]
            row.update({c: source[c] for c in REVIEW_COLUMNS})
        columns = [TableColumn(c) for c in (*ITEM_COLUMNS, *PROVENANCE_COLUMNS)] + review_columns
        columns += [TableColumn(v.name, _table_kind(v.kind), v.unit) for v in values]
    else:
        rows = tidy
        kinds = {"value": "float", "computed_at": "time"}
        columns = [TableColumn(c, kinds.get(c, "str")) for c in TIDY_COLUMNS]  # type: ignore[arg-type]
        columns += review_columns
    if fmt == "csv":
        from kneescope.io.csv_table import write_csv_table

        write_csv_table(path, rows, [c.name for c in columns])
    else:
        from kneescope.io.parquet_table import write_parquet_table

        write_parquet_table(path, rows, columns)
    return {
        "path": str(path),
        "format": fmt,
        "layout": "wide" if wide else "tidy",
        "rows": len(rows),
        "values": len(tidy),
        "runs": list(dict.fromkeys(r["run"] for r in tidy)),
        "capabilities": sorted({r["capability"] for r in tidy}),
        "rejected_knees": len(rejected),
        "dropped_rejected": drop_rejected,
    }


def _table_kind(kind: str) -> Any:
    return kind if kind in ("float", "int", "bool") else "str"


def render_runs(console: Any, runs: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not runs:
        console.print("no run results in the catalog; run a pipeline first (kneescope run)")
        return
    table = Table("run", "finished (UTC)", "items done", "failed", "values", "capabilities")
    for run in runs:
        table.add_row(
            run["name"],
            run["finished_at"][:19].replace("T", " "),
            str(run["items_done"]),
            str(run["items_failed"]),
            str(run["values"]),
            ", ".join(run["capabilities"]),
        )
    console.print(table)


def render_export(console: Any, summary: dict[str, Any]) -> None:
    console.print(
        f"wrote {summary['rows']} rows ({summary['values']} values of "
        f"{len(summary['runs'])} runs, {summary['layout']}) to {summary['path']}",
        markup=False,
    )
