"""``kneescope status``: state of a running or finished cohort run."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def status(
    run_name: Annotated[
        str | None,
        typer.Option("--run", help="Run name (default: the most recent run).", show_default=False),
    ] = None,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's progress: done/failed/remaining, throughput, ETA, timing per step, how
    many done items passed QC (runs with a measure step) and reviewers' QC decisions."""
    from kneescope.cohort.run_status import read_status

    state = read_status(workspace(workspace_dir, catalog), run_name)
    emit(state.to_dict(), as_json, lambda console: render_status(console, state))


def render_status(console: Any, state: Any) -> None:
    """Print a RunStatus as a few lines and a timing table (rich console)."""
    from rich.table import Table

    c = state.counts
    eta = "-" if state.eta_s is None else f"{state.eta_s:,.0f} s"
    if state.throughput_per_h is None:
        rate = "no item done yet" if state.driver_running else "no item done"
    else:
        which = "so far" if state.driver_running else "in the last run that ran items"
        rate = f"{state.throughput_per_h:,.0f} items/h {which} ({state.elapsed_s:,.1f} s)"
    console.print(
        f"run [bold]{state.name}[/] ({state.state}): {c['done']} done, {c['failed']} failed, "
        f"{c['pending'] + c['running']} remaining of {state.total}; {rate}; ETA {eta}"
    )
    if state.last_session_ran == 0:
        console.print("the last run of it found nothing to do (every item done or failed)")
    if state.qc:
        passed, failed = state.qc["passed"], state.qc["failed"]
        colour = "bold yellow" if failed else "bold green"
        console.print(
            f"QC: [{colour}]{passed} of {passed + failed} done items passed[/], {failed} failed "
            "(a QC-failed item's values are in the results table with qc_ok false and its "
            "qc_reasons)",
            highlight=False,
        )
    _render_reviews(console, state)
    table = Table("step / phase", "mean s per item")
    for name, seconds in state.mean_step_s.items():
        table.add_row(f"step {name}", f"{seconds:.4f}")
    for name, seconds in state.mean_phase_s.items():
        if seconds:
            table.add_row(f"phase {name}", f"{seconds:.4f}")
    console.print(table)
    for failure in state.failures:
        console.print(
            f"failed {failure['item_id']} (attempts {failure['attempts']}): {failure['reason']}",
            markup=False,
        )
    for item in state.qc_failures:
        console.print(f"QC failed {item['item_id']}: {item['reasons']}", markup=False)
    shown = len(state.qc_failures)
    if state.qc and state.qc["failed"] > shown:
        console.print(f"... and {state.qc['failed'] - shown} more QC-failed items", markup=False)


def _render_reviews(console: Any, state: Any) -> None:
    """The reviewers' decisions on the run's knees (``kneescope qc import``)."""
    if state.qc_review:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(state.qc_review.items()))
        console.print(
            f"QC review: {counts} (rejected knees stay in the results with qc_review = reject "
            "and are left out of cohort steps)",
            markup=False,
            highlight=False,
        )
    for item in state.qc_rejected:
        note = f": {item['note']}" if item["note"] else ""
        console.print(
            f"rejected {item['item_id']} by {item['reviewer']} at {item['reviewed_at']}{note}",
            markup=False,
        )
    if state.qc_excluded_count:
        shown = ", ".join(state.qc_excluded[:10])
        more = "" if state.qc_excluded_count <= 10 else ", ..."
        console.print(
            f"left out as rejected in QC review: {state.qc_excluded_count} items ({shown}{more})",
            markup=False,
        )
