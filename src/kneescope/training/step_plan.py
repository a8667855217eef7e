"""How a training step runs: patch and batch sizes, accumulation, activation checkpointing
and slabs.

From the config where it gives them, else from the memory planner
(:func:`kneescope.memory.planner.plan_training`), else from the task's defaults. Slabs
(``slab_vox``) come from the config only: the planner sizes plain patches, which a slab step
of the same patch never exceeds.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

from kneescope.errors import ConfigError
from kneescope.models import NetworkConfig, divisor
from kneescope.training.engine_config import EngineConfig
from kneescope.training.task import PatchRequest, PatchTask, TrainingTask

log = logging.getLogger(__name__)

DEFAULT_BATCH = 8
"""Global batch of a task without patches when the config gives none."""


@dataclass(frozen=True)
class StepPlan:
    """How the training step runs.

    Attributes:
        patch_size_vox: the training patch in network dims (``None``: the task has no patches).
        batch_size: samples per micro-step over all ranks.
        accumulation: micro-steps per optimiser step.
        checkpointing: activation checkpointing (``"off"``, ``"per_block"``, ``"selective"``).
        source: ``"config"``, ``"planner"`` or ``"default"``.
        predicted_bytes: the planner's predicted peak memory per rank (``None``: not planned;
            with slabs, the plain step's prediction, an upper bound).
        slab_vox: ``> 0``: the network's full-resolution stage runs in slabs of this many
            slices (:func:`kneescope.memory.slabs.slab_step`); ``0``: the plain step.
    """

    patch_size_vox: tuple[int, ...] | None
    batch_size: int
    accumulation: int = 1
    checkpointing: str = "off"
    source: str = "config"
    predicted_bytes: int | None = None
    slab_vox: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``slab_vox`` only when slabs are on (so a plain plan's record, and the
        run key of a plain run's checkpoints, are those of earlier versions)."""
        out = asdict(self)
        if self.patch_size_vox is not None:
            out["patch_size_vox"] = list(self.patch_size_vox)
        if not self.slab_vox:
            del out["slab_vox"]
        return out


def plan_step(task: TrainingTask, config: EngineConfig, world_size: int = 1) -> StepPlan:
    """The step plan for ``task``: config first, then the planner, then defaults.

    With ``world_size`` data-parallel ranks the planner plans each rank's share (its
    micro-batch, plus DDP's gradient buckets) and the global batch is ``world_size`` times
    the rank's.
    """
    if not isinstance(task, PatchTask):
        plan = StepPlan(None, config.batch_size or DEFAULT_BATCH, source="config")
    else:
        plan = _patch_plan(task.patch_request(), task.network, config, world_size)
    checkpointing = plan.checkpointing if config.checkpointing == "auto" else config.checkpointing
    accumulation = config.accumulation or plan.accumulation
    return StepPlan(
        plan.patch_size_vox,
        plan.batch_size,
        accumulation,
        checkpointing,
        plan.source,
        plan.predicted_bytes,
        config.slab_vox,
    )


def _patch_plan(
    request: PatchRequest, network: NetworkConfig, config: EngineConfig, world_size: int
) -> StepPlan:
    if request.patch_size_vox is not None and config.batch_size is not None:
        return StepPlan(request.patch_size_vox, config.batch_size)
    planned = ask_planner(request, network, config, world_size)
    if planned is not None:
        return StepPlan(
            request.patch_size_vox or planned.patch_size_vox,
            config.batch_size or planned.batch_size * world_size,
            planned.accumulation,
            planned.checkpointing,
            "planner",
            planned.predicted_bytes,
        )
    div = divisor(network)
    patch = request.patch_size_vox or tuple(
        _fit(n, want, d)
        for n, want, d in zip(
            request.case_shape_vox, request.default_patch_size_vox, div, strict=True
        )
    )
    return StepPlan(patch, config.batch_size or request.default_batch_size, source="default")


def _fit(length: int, want: int, div: int) -> int:
    """``want`` rounded down to the divisor, but at least one divisor and at most the axis."""
    size = min(want, max(div, (length // div) * div))
    return max(div, (size // div) * div)


def ask_planner(
    request: PatchRequest, network: NetworkConfig, config: EngineConfig, world_size: int = 1
) -> StepPlan | None:
    """The memory planner's best configuration for one rank's training step within the
    budget (its ``batch_size`` is the rank's micro-batch; DDP's gradient buckets included).

    The planner is looked up at run time so that training still works, with default sizes,
    in a build without it. Raises ``ResourceError`` when nothing fits the budget.
    """
    import importlib

    try:
        plan_training = importlib.import_module("kneescope.memory.planner").plan_training
    except (ImportError, AttributeError):
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    wanted = config.batch_size or request.default_batch_size * world_size
    plan = plan_training(
        network,
        tuple(int(n) for n in request.case_shape_vox),
        None,
        budget_bytes(config.budget),
        optimizer="adamw",
        device=device,
        effective_batch=wanted,  # global: the planner splits it over the ranks
        world_size=world_size,
    )
    best = plan.best  # raises ResourceError when nothing fits
    return StepPlan(
        tuple(int(p) for p in best.patch_size),
        int(best.batch_size),
        int(best.accumulation),
        str(best.checkpointing),
        "planner",
        int(best.required_bytes),
    )


def budget_bytes(budget: str | None) -> int:
    """A memory budget text (``"2GB"``, ``"512 MB"``) in bytes; ``None``: half the free RAM."""
    if budget is None:
        import psutil

        return int(psutil.virtual_memory().available * 0.5)
    text = budget.strip().upper().replace(" ", "")
    units = {"TB": 1e12, "GB": 1e9, "MB": 1e6, "KB": 1e3, "B": 1.0}
    for unit, factor in units.items():
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * factor)
            except ValueError:
                break
    raise ConfigError(f"budget {budget!r} not understood; write e.g. 2GB or 512MB")
