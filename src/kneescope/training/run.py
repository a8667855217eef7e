"""``kneescope train`` as a library call: a training file's task built and trained."""

from __future__ import annotations

from pathlib import Path

from kneescope.training.config import TrainingFile, task_config, task_factory
from kneescope.training.distributed import World
from kneescope.training.engine import FitResult, fit
from kneescope.training.progress import ProgressCallback
from kneescope.workspace import Workspace


def run_training(
    training: TrainingFile,
    workspace: Workspace,
    *,
    base_dir: Path | None = None,
    world: World | None = None,
    progress: ProgressCallback | None = None,
    stop_after: int | None = None,
    source: str = "training config",
) -> FitResult:
    """Build the task of ``training`` and train it on the engine.

    The model goes to ``WS/models/<name>.pt``, checkpoints to ``WS/runs/train-<name>/``.
    ``base_dir`` resolves the task's relative paths (default: the workspace root).
    """
    factory = task_factory(training.task)
    options = task_config(factory, training, source)
    task = factory.build(
        options,
        workspace=workspace,
        seed=training.engine.seed,
        base_dir=base_dir if base_dir is not None else workspace.root,
    )
    return fit(
        task,
        training.engine,
        run_dir=workspace.runs_dir / f"train-{training.name}",
        model_path=workspace.models_dir / f"{training.name}.pt",
        world=world,
        progress=progress,
        stop_after=stop_after,
    )
