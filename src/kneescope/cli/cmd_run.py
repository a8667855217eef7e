"""``kneescope run``: run (or resume) a cohort pipeline with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace

ExecutorOpt = Annotated[
    Literal["local", "dask", "address", "slurm", "pbs", "gpu"] | None,
    typer.Option(
        "--executor",
        help="Override the config's executor (where items run): local (this process), dask "
        "(worker processes on this machine), address (a running Dask scheduler), slurm or pbs "
        "(batch jobs on a cluster; needs pip install 'kneescope[cluster]'), gpu (one worker "
        "per GPU).",
        show_default=False,
        case_sensitive=False,
    ),
]


def run(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Pipeline config (TOML): items, steps, executor.")
    ],
    executor: ExecutorOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show what would run (and the batch job script); run nothing."
        ),
    ] = False,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a cohort: every selected item through the pipeline's steps, resumably.

    Re-running skips items whose input, steps and model are unchanged, retries failed items
    up to max_attempts, and picks up after Ctrl-C or a crash. Results: WS/runs/NAME/.
    """
    from kneescope.cohort.pipeline_config import PipelineConfig
    from kneescope.config import load_config
    from kneescope.errors import ConfigError

    ws = workspace(workspace_dir, catalog)
    pipeline = load_config(PipelineConfig, config)
    if executor is not None:
        try:
            new_exec = pipeline.executor.model_validate(
                {**pipeline.executor.model_dump(), "kind": executor}
            )
        except ValueError as exc:
            raise ConfigError(f"--executor {executor}: {exc}".splitlines()[0]) from None
        pipeline = pipeline.model_copy(update={"executor": new_exec})
    base_dir = config.parent.absolute()
    if dry_run:
        _dry_run(pipeline, ws, base_dir, as_json)
        return
    _run(pipeline, ws, base_dir, as_json)


def _dry_run(pipeline: Any, ws: Any, base_dir: Path, as_json: bool) -> None:
    from kneescope.cohort.run_plan import plan_run

    plan = plan_run(pipeline, ws, base_dir).to_dict()
    script = None
    if pipeline.executor.kind in ("slurm", "pbs"):
        from kneescope.cohort.executors.dask_executor import job_script

        script = job_script(pipeline.executor)
    payload = {"plan": plan, "executor": pipeline.executor.model_dump(), "job_script": script}

    def render(console: Any) -> None:
        console.print(
            f"run [bold]{plan['name']}[/]: {plan['total']} items, {plan['to_run']} to run "
            f"(new {plan['new']}, changed {plan['changed']}, retry {plan['retry']}, "
            f"interrupted {plan['interrupted']}); skip {plan['done']} done, "
            f"{plan['failed_final']} failed for good"
        )
        console.print(f"executor: {pipeline.executor.kind}; results in {plan['run_dir']}")
        if plan["cohort_steps"]:
            console.print(f"then cohort steps: {', '.join(plan['cohort_steps'])}")
        if plan["qc_excluded"]:
            console.print(
                f"left out: {plan['qc_excluded']} items rejected in QC review "
                "(items.qc_rejected = 'exclude'; see `kneescope qc list`)"
            )
        if script:
            console.print("job script:", style="bold")
            console.print(script, markup=False, highlight=False)

    emit(payload, as_json, render)


def run_with_progress(pipeline: Any, ws: Any, base_dir: Path, *, quiet: bool) -> tuple[Any, Any]:
    """Run ``pipeline`` with a live progress bar on stderr (none when ``quiet``).

    Returns the runner's result and the run's status as read back from its manifest. Ctrl-C
    leaves in-flight items pending and exits 130.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kneescope.cohort.run_status import read_status
    from kneescope.cohort.runner import Progress as RunProgress
    from kneescope.cohort.runner import run_pipeline
    from kneescope.errors import KneescopeError

    _stop_on_sigint()
    console = stderr()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        transient=False,
        disable=quiet,
    ) as bar:
        task = bar.add_task(pipeline.name, total=None, detail="starting")

        def on_progress(p: RunProgress) -> None:
            eta = "-" if p.eta_s is None else f"{p.eta_s:,.0f} s"
            bar.update(
                task,
                total=p.total,
                completed=p.skipped + p.done + p.failed,
                detail=(
                    f"done {p.done} failed {p.failed} remaining {p.remaining} "
                    f"skipped {p.skipped} | {p.rate_per_s * 3600:,.0f}/h | ETA {eta}"
                ),
            )

        try:
            result = run_pipeline(pipeline, ws, base_dir=base_dir, on_progress=on_progress)
        except KneescopeError:
            # the error is the one line the user sees: clear the bar, and keep rich from
            # ending a non-interactive stderr with an empty line when the bar stops
            bar.live.transient = True
            bar.live.stop()
            bar.disable = True
            raise
        except KeyboardInterrupt:
            bar.stop()
            console.print(
                f"interrupted: in-flight items of {pipeline.name} are pending again; "
                "run the same command to resume"
            )
            raise typer.Exit(code=130) from None
    return result, read_status(ws, pipeline.name)


def _stop_on_sigint() -> None:
    """Make SIGINT stop the run cleanly even when it was inherited as ignored (a driver started
    in the background by a non-interactive shell), so ``kill -INT`` always works."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(pipeline: Any, ws: Any, base_dir: Path, as_json: bool) -> None:
    result, status = run_with_progress(pipeline, ws, base_dir, quiet=as_json)
    payload = {
        "name": result.name,
        "run_dir": str(result.run_dir),
        "results": str(result.results_path),
        "total": result.total,
        "ran": result.ran,
        "skipped": result.skipped,
        "done": result.done,
        "failed": result.failed,
        "elapsed_s": round(result.elapsed_s, 3),
        "config_hash": result.config_hash,
        "model_hash": result.model_hash,
        "mean_step_s": status.mean_step_s,
        "mean_phase_s": status.mean_phase_s,
        "failures": status.failures,
    }
    cohort = result.cohort
    if cohort is not None:
        payload["cohort_results"] = str(cohort.path)
        payload["cohort_steps_ran"] = list(cohort.ran)
        payload["cohort_steps_skipped"] = list(cohort.skipped)

    def render(out: Any) -> None:
        from kneescope.cli.cmd_status import render_status

        render_status(out, status)
        out.print(f"results: {result.results_path}")
        if cohort is not None:
            out.print(
                f"cohort steps: {len(cohort.ran)} ran, {len(cohort.skipped)} unchanged; "
                f"values: {cohort.path}"
            )

    emit(payload, as_json, render)
    if result.failed:
        raise typer.Exit(code=1)
