"""Steps by name, from the ``kneescope.steps`` entry-point group only.

A step is a class registered under a short name by an installed distribution::

    [project.entry-points."kneescope.steps"]
    my_step = "mypackage.steps:MyStep"

kneescope registers its own steps the same way (pyproject.toml). A config names steps by
these names only: a ``"module:Class"`` string is refused, so a config file can never import
or instantiate arbitrary code. Names are checked against the entry points' metadata without
importing anything; a step's module is imported only when a pipeline uses it (the
segmentation step pulls in torch; the bookkeeping benchmark must not).

:func:`prepare_steps` turns a pipeline's step configs into what a run (or a dry run) needs
without instantiating a step: names checked, classes loaded, the reads/writes chain checked,
model names and relative paths in options resolved, and the fingerprint (config and model
hashes) that keys every item. :func:`build_steps` instantiates them (driver: to check
options before anything runs; workers: to run them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

from kneescope.cohort.pipeline_config import StepConfig
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import Step, declared_results
from kneescope.errors import ConfigError
from kneescope.plugins import registered
from kneescope.workspace import Workspace

STEP_GROUP = "kneescope.steps"
"""The entry-point group steps are registered under."""

_CLASS_CACHE: dict[str, type[Any]] = {}


def registered_steps() -> dict[str, EntryPoint]:
    """Registered step names -> entry points (metadata only: nothing is imported).

    Raises:
        ConfigError: two installed distributions register one name for different classes.
    """
    return registered(STEP_GROUP, "step")


def _unknown(name: str, known: Mapping[str, EntryPoint]) -> ConfigError:
    hint = (
        f"steps are named, not imported: register {name} under the {STEP_GROUP!r} entry-point "
        "group of an installed package (see docs/cohort.md)"
        if ":" in name
        else f'a step from another package must be registered under the "{STEP_GROUP}" '
        "entry-point group"
    )
    if "segment" not in known:  # kneescope's own entry points are not installed
        hint = "kneescope's own steps are not registered: reinstall it (pip install -e .)"
    return ConfigError(
        f"unknown step {name!r}; registered steps: {', '.join(sorted(known)) or 'none'}; {hint}"
    )


def check_step_names(configs: Sequence[StepConfig]) -> None:
    """Refuse any step name that no installed distribution registers (imports nothing)."""
    known = registered_steps()
    for config in configs:
        if config.name not in known:
            raise _unknown(config.name, known)


def step_class(name: str) -> type[Any]:
    """The class registered as ``name`` (its module is imported on first use)."""
    cached = _CLASS_CACHE.get(name)
    if cached is not None:
        return cached
    known = registered_steps()
    ep = known.get(name)
    if ep is None:
        raise _unknown(name, known)
    try:
        cls = ep.load()
    except Exception as exc:
        raise ConfigError(
            f"step {name!r}: cannot load {ep.value} ({type(exc).__name__}: {exc}); "
            "reinstall the package that registers it"
        ) from None
    if not isinstance(cls, type) or not all(
        hasattr(cls, a) for a in ("name", "version", "reads", "writes", "run", "setup")
    ):
        raise ConfigError(f"step {name!r}: {ep.value} is not a step class (see docs/cohort.md)")
    _CLASS_CACHE[name] = cls
    return cls


def build_step(config: StepConfig) -> Step:
    """Instantiate one registered step with its options."""
    cls = step_class(config.name)
    try:
        step = cls(**config.options)
    except TypeError as exc:
        raise ConfigError(f"step {config.name!r}: bad options {config.options}: {exc}") from None
    if not isinstance(step, Step):
        missing = [a for a in _PROTOCOL if not hasattr(step, a)]
        raise ConfigError(
            f"step {config.name!r}: {cls.__module__}.{cls.__qualname__} does not implement the "
            f"Step protocol (missing: {', '.join(missing) or 'none'}); derive it from "
            "kneescope.cohort.step.BaseStep (see docs/ARCHITECTURE.md)"
        )
    return step


_PROTOCOL = (
    "name",
    "version",
    "capability",
    "results",
    "reads",
    "writes",
    "prefetchable",
    "setup",
    "run",
)


def declared_columns(config: StepConfig) -> tuple[ResultColumn, ...]:
    """The result columns the registered step ``config.name`` declares with its options."""
    return declared_results(step_class(config.name), config.options)


def _check_columns(configs: Sequence[StepConfig], classes: Sequence[type[Any]]) -> None:
    """Refuse two steps of one pipeline declaring the same column (one would hide the other)."""
    owner: dict[str, int] = {}
    for index, (config, cls) in enumerate(zip(configs, classes, strict=True)):
        for column in declared_results(cls, config.options):
            first = owner.setdefault(column.name, index)
            if first != index:
                raise ConfigError(
                    f"steps {configs[first].name!r} (step {first + 1}) and {config.name!r} "
                    f"(step {index + 1}) both declare the column {column.name!r}; a "
                    "pipeline's columns must be unique"
                )


def _check_chain(configs: Sequence[StepConfig], classes: Sequence[type[Any]]) -> None:
    available: set[str] = set()
    for config, cls in zip(configs, classes, strict=True):
        missing = [r for r in cls.reads if r not in available]
        if missing:
            raise ConfigError(
                f"step {config.name!r} reads {missing} but no earlier step writes them; "
                f"reorder the steps or add a loader (available: {sorted(available) or 'none'})"
            )
        available.update(cls.writes)


def build_steps(configs: Sequence[StepConfig]) -> list[Step]:
    """Instantiate every step and check that each step's reads are written by earlier ones."""
    check_step_names(configs)
    steps = [build_step(c) for c in configs]
    _check_chain(configs, [type(s) for s in steps])
    _check_columns(configs, [type(s) for s in steps])
    return steps


@dataclass(frozen=True)
class PreparedSteps:
    """A pipeline's steps ready to run, built without instantiating a step.

    Attributes:
        configs: the step configs with model names and relative paths in options resolved
            (absolute paths): what workers build their steps from.
        config_hash: hash of step names, versions and options (model files excluded).
        model_hash: hash of every model file the steps use ("" when none).
        prefetchable: some step is a pure-I/O step that may run ahead of compute.
    """

    configs: tuple[StepConfig, ...]
    config_hash: str
    model_hash: str
    prefetchable: bool

    @property
    def hashes(self) -> dict[str, str]:
        return {"config_hash": self.config_hash, "model_hash": self.model_hash}


def _resolve_options(
    config: StepConfig, cls: type[Any], workspace: Workspace, base_dir: Path
) -> StepConfig:
    from kneescope.models.pretrained import resolve_model  # a file, WS/models/, or shipped

    options = dict(config.options)
    for key in getattr(cls, "model_options", ()):
        value = options.get(key)
        if isinstance(value, str) and value:
            options[key] = str(resolve_model(value, workspace, base_dir))
    for key in getattr(cls, "path_options", ()):
        value = options.get(key)
        if isinstance(value, str) and value:
            path = Path(value).expanduser()
            options[key] = str(path if path.is_absolute() else (base_dir / path).absolute())
    return StepConfig(name=config.name, options=options)


def prepare_steps(
    configs: Sequence[StepConfig], workspace: Workspace, base_dir: Path
) -> PreparedSteps:
    """Check, resolve and fingerprint a pipeline's steps; instantiates nothing.

    Args:
        configs: the steps as written in the config.
        workspace: where model names are looked up (``WS/models/``).
        base_dir: folder relative paths in options are resolved against (the config file's
            folder; the workspace when the config is built in code).

    Raises:
        ConfigError: an unregistered step, a step reading what no earlier step writes.
        ModelError: a model option that names no model file.
    """
    check_step_names(configs)
    classes = [step_class(c.name) for c in configs]
    _check_chain(configs, classes)
    _check_columns(configs, classes)
    resolved = tuple(
        _resolve_options(c, cls, workspace, base_dir)
        for c, cls in zip(configs, classes, strict=True)
    )
    hashes = steps_fingerprint(resolved, classes)
    return PreparedSteps(
        configs=resolved,
        config_hash=hashes["config_hash"],
        model_hash=hashes["model_hash"],
        prefetchable=any(getattr(cls, "prefetchable", False) for cls in classes),
    )


def steps_fingerprint(
    configs: Sequence[StepConfig], classes: Sequence[type[Any]] | None = None
) -> dict[str, str]:
    """Hashes that decide whether an item's result is still valid.

    Returns ``{"config_hash": ..., "model_hash": ...}``: the config hash covers step names,
    versions and options (not executor or output settings, which do not change results,
    and not the paths of model files, whose contents the model hash covers); the model hash
    covers every step's model (``cls.model_hash_for(options)``). Computed from the classes,
    so a dry run gets the same hashes as the run without instantiating a step.
    """
    if classes is None:
        classes = [step_class(c.name) for c in configs]
    spec = []
    models = []
    for config, cls in zip(configs, classes, strict=True):
        model_keys = set(getattr(cls, "model_options", ()))
        options = {k: v for k, v in config.options.items() if k not in model_keys}
        spec.append({"name": config.name, "version": cls.version, "options": options})
        hook = getattr(cls, "model_hash_for", None)
        model = str(hook(config.options)) if hook is not None else ""
        if model:
            models.append(model)
    config_hash = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    model_hash = hashlib.sha256("|".join(models).encode()).hexdigest()[:16] if models else ""
    return {"config_hash": config_hash.hexdigest()[:16], "model_hash": model_hash}
