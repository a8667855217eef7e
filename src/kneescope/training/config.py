"""Training files: one flat TOML/JSON table, split into the engine's keys and the task's keys.

A training file names its task with ``task = "segmentation"`` (the default) and the model with
``name``; the keys of :data:`~kneescope.training.engine_config.ENGINE_KEYS` configure the
engine, every other key goes to the task's own config (validated by the task). Tasks are found
in the ``kneescope.tasks`` entry-point group, so a plug-in distribution can add one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kneescope.config import FROZEN, read_mapping, validate_config
from kneescope.errors import ConfigError
from kneescope.plugins import registered
from kneescope.training.engine_config import ENGINE_KEYS, EngineConfig
from kneescope.training.task import TaskFactory

TASK_GROUP = "kneescope.tasks"
"""The entry-point group of training tasks."""


class TrainingFile(BaseModel):
    """A training file, split.

    Attributes:
        name: model name; the model file is ``WS/models/<name>.pt``, checkpoints go to
            ``WS/runs/train-<name>/``.
        task: the training task (an entry of the ``kneescope.tasks`` group).
        engine: the engine's settings.
        options: the task's keys, unvalidated (see :func:`task_config`).
    """

    model_config = FROZEN

    name: str = Field("knee-seg", pattern=r"^[A-Za-z0-9_.-]+$")
    task: str = "segmentation"
    engine: EngineConfig = Field(default_factory=EngineConfig)
    options: dict[str, Any] = Field(default_factory=dict)

    def with_engine(self, **changes: Any) -> TrainingFile:
        """A copy with engine settings replaced (e.g. ``iterations`` from the command line)."""
        engine = EngineConfig.model_validate({**self.engine.model_dump(), **changes})
        return self.model_copy(update={"engine": engine})


def split_training_table(raw: Mapping[str, Any], source: str = "training config") -> TrainingFile:
    """Split a flat table into name, task, engine keys and task keys (engine keys validated).

    Raises:
        ConfigError: an engine value or the name is invalid (one line naming the key).
    """
    engine = {k: v for k, v in raw.items() if k in ENGINE_KEYS}
    options = {k: v for k, v in raw.items() if k not in ENGINE_KEYS | {"name", "task"}}
    top = {k: raw[k] for k in ("name", "task") if k in raw}
    checked = validate_config(EngineConfig, engine, source)  # errors name the key itself
    return validate_config(TrainingFile, {**top, "engine": checked, "options": options}, source)


def load_training_file(path: Path) -> TrainingFile:
    """Read and split a training file (TOML, JSON or YAML)."""
    return split_training_table(read_mapping(path), str(path))


def task_factory(name: str) -> TaskFactory:
    """The task factory registered as ``name`` in the ``kneescope.tasks`` group.

    Raises:
        ConfigError: no task of that name is installed (the message lists those that are).
    """
    found = registered(TASK_GROUP, "training task")
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigError(
            f"unknown training task {name!r} (installed: {known}); set task to one of them "
            "or reinstall kneescope (pip install -e .) if the list is empty"
        )
    obj = found[name].load()
    factory = obj() if isinstance(obj, type) else obj
    if not isinstance(factory, TaskFactory):
        raise ConfigError(f"training task {name!r} is not a task factory; fix its entry point")
    return factory


def task_config(factory: TaskFactory, training: TrainingFile, source: str) -> BaseModel:
    """The task's config from the training file's task keys (one-line ConfigError if invalid)."""
    return validate_config(factory.config_type, dict(training.options), source)
