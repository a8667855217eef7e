"""Build steps from config: short names for known steps, or any ``"module:Class"``.

The registry maps names to import paths, so a step module is imported only when a pipeline
uses it (the segmentation step pulls in torch; the bookkeeping benchmark must not).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from typing import Any

from kneescope.cohort.pipeline_config import StepConfig
from kneescope.cohort.step import Step
from kneescope.errors import ConfigError

KNOWN_STEPS: dict[str, str] = {
    "load_array": "kneescope.cohort.builtin_steps:LoadArray",
    "array_stats": "kneescope.cohort.builtin_steps:ArrayStats",
    "noop": "kneescope.cohort.builtin_steps:Noop",
    "burn_cpu": "kneescope.cohort.builtin_steps:BurnCpu",
    "peak_rss": "kneescope.cohort.builtin_steps:PeakRss",
    "sleep": "kneescope.cohort.builtin_steps:Sleep",
    "crash_once": "kneescope.cohort.builtin_steps:CrashOnce",
    "load_volume": "kneescope.cohort.knee_steps:LoadVolume",
    "load_labels": "kneescope.cohort.knee_steps:LoadLabels",
    "segment": "kneescope.cohort.knee_steps:Segment",
    "measure": "kneescope.cohort.knee_steps:Measure",
}
"""Short step names -> ``module:Class`` (imported only when a pipeline names them)."""


def _step_class(name: str) -> Any:
    target = KNOWN_STEPS.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep:
        raise ConfigError(
            f"unknown step {name!r}; use one of {sorted(KNOWN_STEPS)} or 'package.module:Class'"
        )
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"step {name!r}: cannot import {target} ({exc})") from None


def build_step(config: StepConfig) -> Step:
    """Instantiate one step with its options."""
    cls = _step_class(config.name)
    try:
        step = cls(**config.options)
    except TypeError as exc:
        raise ConfigError(f"step {config.name!r}: bad options {config.options}: {exc}") from None
    if not isinstance(step, Step):
        raise ConfigError(f"step {config.name!r}: {cls} does not implement the Step protocol")
    return step


def build_steps(configs: Sequence[StepConfig]) -> list[Step]:
    """Instantiate every step and check that each step's reads are written by earlier ones."""
    steps = [build_step(c) for c in configs]
    available: set[str] = set()
    for step in steps:
        missing = [r for r in step.reads if r not in available]
        if missing:
            raise ConfigError(
                f"step {step.name!r} reads {missing} but no earlier step writes them; "
                f"reorder the steps or add a loader (available: {sorted(available) or 'none'})"
            )
        available.update(step.writes)
    return steps


def steps_fingerprint(configs: Sequence[StepConfig], steps: Sequence[Step]) -> dict[str, str]:
    """Hashes that decide whether an item's result is still valid.

    Returns ``{"config_hash": ..., "model_hash": ...}``: the config hash covers step names,
    versions and options (not executor or output settings, which do not change results);
    the model hash covers every step's model weights.
    """
    spec = [
        {"name": c.name, "version": s.version, "options": c.options}
        for c, s in zip(configs, steps, strict=True)
    ]
    config_hash = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    models = [s.model_hash for s in steps if s.model_hash]
    model_hash = hashlib.sha256("|".join(models).encode()).hexdigest()[:16] if models else ""
    return {"config_hash": config_hash.hexdigest()[:16], "model_hash": model_hash}
