"""``kneescope report``: static HTML pages of a finished run (a cohort page with the QC
review, a page per knee and visit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def report(
    run: Annotated[
        str,
        typer.Option(
            "--run",
            help="The finished run to report on (a folder under WORKSPACE/runs).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the report (default: WORKSPACE/reports/RUN).",
            show_default=False,
        ),
    ] = None,
    trial: Annotated[
        Path | None,
        typer.Option(
            "--trial",
            help="Also show the figures of this `kneescope trial` output folder on the "
            "cohort page (the run's cohort-step figures and its trials under "
            "WORKSPACE/trials are always shown).",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Worker processes for the knee pages.")
    ] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier report in the folder.")
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a run's report as static HTML that opens from disk: a cohort page (index.html:
    distributions by KL grade and visit, outliers, every knee with the QC review controls,
    trial figures) and a page per knee and visit."""
    from kneescope.cohort.pipeline_config import is_run_name
    from kneescope.errors import InputError
    from kneescope.reports.report import write_report

    if not is_run_name(run):
        raise InputError(
            f"--run {run!r} is not a run name; give the name of a run folder under "
            "WORKSPACE/runs (see `kneescope status`)"
        )
    ws = workspace(workspace_dir, catalog)
    folder = output if output is not None else ws.root / "reports" / run
    outcome = write_report(
        ws.root,
        run,
        folder.expanduser().absolute(),
        catalog_url=ws.catalog_url,
        jobs=jobs,
        overwrite=overwrite,
        trial_dir=trial,
    )
    payload = outcome.to_json()
    emit(payload, as_json, lambda console: render_report(console, payload))


def render_report(console: Any, payload: dict[str, Any]) -> None:
    """A few lines: what was written and where to open it."""
    console.print(
        f"report of run {payload['run']}: {payload['knees']} knee pages "
        f"({payload['flagged']} QC-flagged), {payload['distributions']} distribution "
        f"figures, {payload['outliers']} outliers, {payload['trial_figures']} trial figures "
        f"in {payload['seconds']:.1f} s",
        markup=False,
        highlight=False,
    )
    for note in payload.get("notes", []):
        console.print(note, markup=False, highlight=False)
    console.print(f"open {payload['index']}", markup=False, highlight=False)
