"""``kneescope train -w WS --config FILE``: train a model of any task on the training engine."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace
from kneescope.errors import ConfigError


def train(
    ctx: typer.Context,
    config_file: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="Training config (TOML or JSON), see docs/training.md.",
        ),
    ],
    iterations: Annotated[
        int | None, typer.Option("--iterations", help="Override the config's iterations.")
    ] = None,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after", help="Stop after this many iterations in total (resume later)."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch.")] = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Train with this many processes, each on its share of every batch "
            "(data parallel; one per GPU on a GPU machine). Under srun leave it out: each "
            "Slurm task is one process.",
        ),
    ] = 1,
    launcher: Annotated[
        Literal["local", "slurm"],
        typer.Option(
            "--launcher",
            case_sensitive=False,
            help="Where the --nproc processes run: local (this machine) or slurm (srun, one "
            "task per process, in the current allocation or a new one).",
        ),
    ] = "local",
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model (segmentation by default; the file's task key picks another task) from
    the catalog's labelled series or a folder of NIfTI pairs; resumes from the last checkpoint
    when run again with the same config."""
    from kneescope.training.config import load_training_file, task_config, task_factory

    path = config_file.expanduser()
    training = load_training_file(path)
    task_config(task_factory(training.task), training, str(path))  # bad keys: before the bar
    if nproc > 1 or launcher == "slurm":
        batch = training.engine.batch_size
        if batch is not None and batch % nproc:
            raise ConfigError(
                f"batch_size {batch} does not split evenly over --nproc {nproc} processes; "
                f"use a batch_size that is a multiple of {nproc}"
            )
        _launch(ctx, nproc, launcher)  # the same command as nproc ranks; they do the work
        return
    overrides: dict[str, Any] = {}
    if iterations is not None:
        overrides["iterations"] = iterations
    if threads is not None:
        overrides["threads"] = threads
    if overrides:
        training = training.with_engine(**overrides)
    ws = workspace(workspace_dir, catalog).ensure()
    base_dir = path.absolute().parent
    from kneescope.training.distributed import rank_guard, shutdown, world_from_env

    world = world_from_env()  # one rank of several when started by --nproc, srun or torchrun
    try:
        with rank_guard(world):
            if as_json or not world.is_main:
                result = _run(training, ws, base_dir, stop_after, None, str(path), world)
            else:
                result = train_with_progress(
                    training, ws, stop_after, base_dir=base_dir, source=str(path), world=world
                )
    finally:
        shutdown(world)
    if not world.is_main:
        return  # rank 0 reports
    payload = _payload(result)
    emit(payload, as_json, lambda console: _render(console, payload))


def _run(
    training: Any,
    ws: Any,
    base_dir: Any,
    stop_after: int | None,
    progress: Any,
    source: str,
    world: Any = None,
) -> Any:
    from kneescope.training.run import run_training

    return run_training(
        training,
        ws,
        base_dir=base_dir,
        world=world,
        progress=progress,
        stop_after=stop_after,
        source=source,
    )


def _launch(ctx: typer.Context, nproc: int, launcher: str) -> None:
    """Run this same ``kneescope train`` command as ``nproc`` ranks (without ``--nproc`` and
    ``--launcher``) and exit with their exit code."""
    from kneescope.training.launch import launch_local, launch_slurm

    args = _rank_args(ctx, skip={"nproc", "launcher"})
    code = launch_slurm(args, nproc) if launcher == "slurm" else launch_local(args, nproc)
    if code:
        raise typer.Exit(code)


def _rank_args(ctx: Any, skip: set[str]) -> list[str]:
    """The command line that repeats this command's options (and the global ones), less
    ``skip``: what each rank runs."""
    args: list[str] = []
    root = ctx.find_root()
    for level in (root, ctx) if root is not ctx else (ctx,):
        if level is ctx:
            args += ctx.command_path.split()[1:]
        for param in level.command.params:
            if param.name in skip or not getattr(param, "opts", None) or param.name == "version":
                continue
            value = level.params.get(param.name)
            count = getattr(param, "count", False)
            if value is None or value is False or value == () or (value == 0 and count):
                continue
            opt = max(param.opts, key=len)  # the long name
            if param.param_type_name == "argument":
                args += [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
            elif count:
                args += [opt] * int(value)
            elif getattr(param, "is_flag", False):
                args.append(opt)
            elif isinstance(value, list | tuple):
                for item in value:
                    args += [opt, str(item)]
            else:
                args += [opt, str(value)]
    return args


def _payload(result: Any) -> dict[str, Any]:
    """The summary printed (or emitted as JSON) at the end."""
    model = result.model
    metrics = result.metrics
    return {
        "model": str(result.model_path) if result.model_path else None,
        "task": model.kind,
        "iterations_run": result.iterations_run,
        "resumed_from": result.resumed_from,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 1),
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "score": None if metrics is None else metrics.score,
        "validation": {} if metrics is None else dict(metrics.values),
        "labels": model.spec.get("labels"),
        "classes": model.spec.get("classes"),
        "plan": result.plan,
    }


def train_with_progress(
    training: Any,
    ws: Any,
    stop_after: int | None,
    *,
    base_dir: Any = None,
    source: str = "training config",
    world: Any = None,
) -> Any:
    """Train with a rich progress bar (loss, validation score, ETA) on stderr; the result."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from kneescope.training.progress import FitProgress

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        "loss {task.fields[loss]}",
        "score {task.fields[score]}",
        TimeRemainingColumn(),
        console=stderr(),
    ) as bar:
        total = training.engine.iterations
        task = bar.add_task(f"train {training.name}", total=total, loss="-", score="-")

        def progress(p: FitProgress) -> None:
            score = "-" if math.isnan(p.score) else f"{p.score:.3f}"
            bar.update(task, completed=p.iteration, loss=f"{p.loss:.3f}", score=score)

        return _run(training, ws, base_dir, stop_after, progress, source, world)


def _render(console: Any, payload: dict[str, Any]) -> None:
    from rich.table import Table

    if payload["model"]:
        console.print(f"model written to {payload['model']}")
    else:
        console.print(f"stopped after {payload['iterations_run']} iterations; run again to resume")
    if payload["stopped_early"]:
        console.print("early stopping: no better validation score for the set patience")
    validation = payload["validation"]
    dice, labels = validation.get("dice"), payload["labels"]
    if dice and labels:
        table = Table("structure", "Dice", "surface distance (mm)")
        asd = validation.get("surface_distance_mm", [float("nan")] * len(dice))
        for value, name in sorted((int(k), v) for k, v in labels.items()):
            table.add_row(name, f"{dice[value - 1]:.3f}", f"{asd[value - 1]:.2f}")
        console.print(table)
    elif payload["score"] is not None:
        console.print(f"validation score {payload['score']:.4f}")
        for key, value in validation.items():
            if isinstance(value, int | float):
                console.print(f"  {key}: {value:.4f}")
