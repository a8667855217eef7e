"""``kneescope train -w WS --config FILE``: train a 2D or 3D segmentation network."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr, workspace


def train(
    config_file: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="Training config (TOML or JSON), see docs/segmentation.md.",
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
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a segmentation model from the catalog's labelled series (or a folder of NIfTI
    pairs); resumes from the last checkpoint when run again with the same config."""
    from kneescope.config import load_config
    from kneescope.training.config import TrainConfig
    from kneescope.training.run import run_training

    config = load_config(TrainConfig, config_file.expanduser())
    overrides: dict[str, Any] = {}
    if iterations is not None:
        overrides["iterations"] = iterations
    if threads is not None:
        overrides["threads"] = threads
    if overrides:
        config = TrainConfig.model_validate({**config.model_dump(), **overrides})
    if config.data_dir is not None and not config.data_dir.is_absolute():
        base = config_file.expanduser().absolute().parent
        config = TrainConfig.model_validate(
            {**config.model_dump(), "data_dir": base / config.data_dir}
        )
    ws = workspace(workspace_dir, catalog).ensure()
    if as_json:
        result = run_training(config, ws, stop_after=stop_after)
    else:
        result = train_with_progress(config, ws, stop_after)
    payload = {
        "model": str(result.model_path) if result.model_path else None,
        "iterations_run": result.iterations_run,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 1),
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "validation": result.validation,
        "labels": result.model.spec.labels,
        "plan": result.model.spec.training.get("plan"),
    }
    emit(payload, as_json, lambda console: _render(console, payload, result.model.spec.labels))


def train_with_progress(config: Any, ws: Any, stop_after: int | None) -> Any:
    """Train with a rich progress bar (loss, Dice, ETA) on stderr; return the result."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from kneescope.training.loop import TrainProgress
    from kneescope.training.run import run_training

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        "loss {task.fields[loss]}",
        "Dice {task.fields[dice]}",
        TimeRemainingColumn(),
        console=stderr(),
    ) as bar:
        task = bar.add_task(f"train {config.name}", total=config.iterations, loss="-", dice="-")

        def progress(p: TrainProgress) -> None:
            dice = "-" if math.isnan(p.dice) else f"{p.dice:.3f}"
            bar.update(task, completed=p.iteration, loss=f"{p.loss:.3f}", dice=dice)

        return run_training(config, ws, progress=progress, stop_after=stop_after)


def _render(console: Any, payload: dict[str, Any], labels: dict[int, str]) -> None:
    from rich.table import Table

    if payload["model"]:
        console.print(f"model written to {payload['model']}")
    else:
        console.print(f"stopped after {payload['iterations_run']} iterations; run again to resume")
    dice = payload["validation"].get("dice") if payload["validation"] else None
    if dice:
        table = Table("structure", "Dice", "surface distance (mm)")
        asd = payload["validation"].get("surface_distance_mm", [float("nan")] * len(dice))
        for value, name in sorted(labels.items()):
            table.add_row(name, f"{dice[value - 1]:.3f}", f"{asd[value - 1]:.2f}")
        console.print(table)
