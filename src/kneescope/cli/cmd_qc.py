"""``kneescope qc``: reviewers' QC decisions: import a decisions file, list the decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def qc(
    action: Annotated[
        Literal["import", "list"],
        typer.Argument(
            help="import: store a decisions file exported from the cohort report in the "
            "catalog; list: show the knees' current decisions.",
            show_default=False,
        ),
    ],
    file: Annotated[
        Path | None,
        typer.Argument(
            help="The decisions file (qc-decisions-RUN.json) to import.", show_default=False
        ),
    ] = None,
    run_name: Annotated[
        str | None,
        typer.Option(
            "--run", help="list: only decisions made on this run's report.", show_default=False
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history", help="list: every decision ever imported, not only the current ones."
        ),
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import reviewers' accept / reject / re-segment decisions (the cohort report's
    'Export decisions' file) into the catalog, or list them. Later runs and `kneescope
    results` honour them: rejected knees are flagged (or excluded) and never reach cohort
    steps; a re-segment decision makes the next run redo the knee once."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.qc_reviews import import_decisions, list_reviews
    from kneescope.errors import InputError

    if action == "import":
        if file is None:
            raise InputError(
                "qc import needs the decisions FILE the cohort report exported "
                "(qc-decisions-RUN.json)"
            )
        given = [name for name, value in (("--run", run_name), ("--history", history)) if value]
        if given:
            raise InputError(f"{', '.join(given)} applies to qc list, not qc import")
    elif file is not None:
        raise InputError(f"qc list takes no FILE ({file}); to import it: kneescope qc import FILE")
    ws = workspace(workspace_dir, catalog)
    cat = Catalog.for_workspace(ws, create=False)
    try:
        if action == "import":
            assert file is not None
            summary = import_decisions(cat, file).to_json()
            emit(summary, as_json, lambda console: render_import(console, summary))
            return
        rows = [r.to_json() for r in list_reviews(cat, run_name, history)]
    finally:
        cat.close()
    emit(rows, as_json, lambda console: render_list(console, rows))


def render_import(console: Any, summary: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {kind}" for kind, n in summary["by_decision"].items() if n)
    if not summary["imported"]:
        console.print(
            f"nothing new: the {summary['decisions']} decisions of {summary['path']} are in "
            "the catalog already",
            markup=False,
        )
        return
    already = (
        f"; {summary['unchanged']} were in the catalog already" if summary["unchanged"] else ""
    )
    console.print(
        f"imported {summary['imported']} decisions by {summary['reviewer']} on run "
        f"{summary['run']} ({counts}){already}; later runs and `kneescope results` honour them",
        markup=False,
    )


def render_list(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not rows:
        console.print("no QC decisions in the catalog; import them with `kneescope qc import FILE`")
        return
    table = Table("run", "item", "subject", "visit", "side", "decision", "reviewer", "decided")
    table.add_column("note")
    for row in rows:
        table.add_row(
            row["run"],
            row["item_id"],
            row["subject"],
            row["visit"],
            row["side"],
            row["decision"],
            row["reviewer"],
            row["decided_at"][:19].replace("T", " "),
            row["note"],
        )
    console.print(table)
