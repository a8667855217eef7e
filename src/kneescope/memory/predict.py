"""Predict peak memory, its breakdown and FLOPs of a step, without allocating tensors.

The network is built and the step run inside ``FakeTensorMode``: every aten op computes
output shapes and dtypes only, while :class:`~kneescope.memory.tracker.AllocationTracker`
accounts storages exactly as a real run would and counts FLOPs with torch's flop formulas
(recomputation by checkpointing included). Results are cached per (network, step) in
memory and on disk (:func:`cache_dir`).

Safety margin: :data:`MARGIN_FRACTION` of the peak plus :data:`MARGIN_RESERVE_BYTES`
for what the tracker cannot see (workspaces beyond the modelled convolution copies,
allocator rounding and fragmentation, the CUDA context).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from kneescope.config import FROZEN
from kneescope.io.atomic import atomic_write_text
from kneescope.memory.step import StepConfig, run_steps
from kneescope.memory.tracker import CATEGORIES, AllocationTracker
from kneescope.models import (
    NetworkConfig,
    build_network,
    count_parameters,
    is_classifier,
    model_fingerprint,
)

logger = logging.getLogger(__name__)

_MODEL_VERSION = 4
"""Bump when the tracker or step changes what a prediction returns (invalidates the cache)."""

MARGIN_FRACTION = 0.10
"""Relative safety margin added to the predicted peak."""
MARGIN_RESERVE_BYTES = 512 * 2**20
"""Absolute reserve added to the predicted peak (CUDA context, cuDNN workspace)."""


class MemoryEstimate(BaseModel):
    """Predicted peak of one step. Bytes are device bytes; ``flops`` per step (fwd+bwd)."""

    model_config = FROZEN

    network: str
    step: StepConfig
    parameters: int
    peak_bytes: int
    margin_bytes: int
    required_bytes: int
    breakdown_bytes: dict[str, int]
    flops: int
    host_offload_bytes: int
    seconds: float


def margin_for(peak_bytes: int) -> int:
    """The safety margin added to a predicted peak of ``peak_bytes``."""
    return int(MARGIN_FRACTION * peak_bytes) + MARGIN_RESERVE_BYTES


@functools.lru_cache(maxsize=4096)
def predict_step(network: NetworkConfig, step: StepConfig) -> MemoryEstimate:
    """Predict the peak memory of ``step`` on ``network`` (seconds; nothing allocated).

    The step is a steady-state step: the optimizer state exists before it starts.
    Breakdown keys: :data:`~kneescope.memory.tracker.CATEGORIES`.
    """
    return _trace(network, step, count_flops=True)[0]


def cache_dir() -> Path | None:
    """Folder of the on-disk prediction cache: ``$KNEESCOPE_CACHE_DIR`` or
    ``~/.cache/kneescope``; set ``KNEESCOPE_CACHE_DIR=off`` to disable it."""
    env = os.environ.get("KNEESCOPE_CACHE_DIR")
    if env == "off":
        return None
    root = Path(env) if env else Path.home() / ".cache" / "kneescope"
    return root / "memory-predictions"


def _cache_key(network: NetworkConfig, step: StepConfig, count_flops: bool) -> str:
    from kneescope import __version__

    payload = json.dumps(
        [
            torch.__version__,
            __version__,
            _MODEL_VERSION,
            network.model_dump(mode="json"),
            step.model_dump(mode="json", exclude={"slab_vox"} if not step.slab_vox else None),
            count_flops,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=256)
def _trace(
    network: NetworkConfig, step: StepConfig, count_flops: bool
) -> tuple[MemoryEstimate, tuple[int, ...]]:
    folder = cache_dir()
    key = _cache_key(network, step, count_flops)
    if folder is not None and (folder / f"{key}.json").is_file():
        try:
            data = json.loads((folder / f"{key}.json").read_text())
            return MemoryEstimate.model_validate(data["estimate"]), tuple(data["timeline"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry: recompute it
    result = _trace_uncached(network, step, count_flops)
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            payload = {"estimate": result[0].model_dump(mode="json"), "timeline": result[1]}
            atomic_write_text(folder / f"{key}.json", json.dumps(payload))
        except OSError:
            logger.warning("cannot write the prediction cache in %s", folder)
    return result


def _trace_uncached(
    network: NetworkConfig, step: StepConfig, count_flops: bool
) -> tuple[MemoryEstimate, tuple[int, ...]]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    start = time.perf_counter()
    tracker = AllocationTracker(workspace=True)
    with FakeTensorMode():
        torch.manual_seed(0)
        net = build_network(network)
        counters = run_steps(
            net,
            step,
            classifier=is_classifier(network),
            out_channels=network.out_channels,
            in_channels=network.in_channels,
            tracker=tracker,
            device=torch.device("cpu"),
            offload="simulate",
            count_flops=count_flops,
        )
    breakdown = tracker.peak_breakdown()
    peak = tracker.peak_bytes
    margin = margin_for(peak)
    estimate = MemoryEstimate(
        network=model_fingerprint(network),
        step=step,
        parameters=count_parameters(network),
        peak_bytes=peak,
        margin_bytes=margin,
        required_bytes=peak + margin,
        breakdown_bytes={k: breakdown[k] for k in CATEGORIES},
        flops=counters.flops,
        host_offload_bytes=counters.host_offload_bytes,
        seconds=time.perf_counter() - start,
    )
    return estimate, tuple(tracker.timeline)


class PeakModel:
    """Peak bytes of a fully convolutional step as a function of batch x voxels.

    Built from two fake traces of the same step at two patch sizes (same op sequence): every
    point of the live-bytes timeline is ``a_t + b_t * x`` with ``x = batch * voxels``
    (activations scale with the patch, weights and optimizer state do not), so the peak at
    any ``x`` is ``max_t (a_t + b_t * x)``, exact for sizes that are multiples of the divisor
    (up to per-sample normalisation statistics, a few kB). FLOPs and host offload bytes are
    proportional to ``x``.
    """

    def __init__(self, small: _TraceResult, large: _TraceResult) -> None:
        (e1, t1), (e2, t2) = small, large
        x1 = _voxels(e1.step)
        x2 = _voxels(e2.step)
        if len(t1) != len(t2) or x1 == x2:
            raise ValueError("traces differ in their op sequence; use predict_step")
        a1 = np.asarray(t1, dtype=np.float64)
        a2 = np.asarray(t2, dtype=np.float64)
        self.slopes = (a2 - a1) / (x2 - x1)
        self.intercepts = a1 - self.slopes * x1
        self.reference = e2
        self.flops_per_voxel = e2.flops / x2
        self.offload_per_voxel = e2.host_offload_bytes / x2

    def peak_bytes(self, batch_size: int, shape_vox: tuple[int, ...]) -> int:
        """Predicted peak bytes for ``batch_size`` patches of ``shape_vox``."""
        x = batch_size * math.prod(shape_vox)
        return int(np.max(self.intercepts + self.slopes * x))

    def flops(self, batch_size: int, shape_vox: tuple[int, ...]) -> int:
        """Predicted FLOPs of one step."""
        return int(self.flops_per_voxel * batch_size * math.prod(shape_vox))

    def host_offload_bytes(self, batch_size: int, shape_vox: tuple[int, ...]) -> int:
        """Bytes of saved activations offloaded to host per step."""
        return int(self.offload_per_voxel * batch_size * math.prod(shape_vox))


_TraceResult = tuple[MemoryEstimate, tuple[int, ...]]


def _voxels(step: StepConfig) -> int:
    return step.batch_size * math.prod(step.input_shape_vox)


def peak_model(network: NetworkConfig, step: StepConfig, small_vox: tuple[int, ...]) -> PeakModel:
    """A :class:`PeakModel` from traces of ``step`` (exact, with FLOPs) and at ``small_vox``.

    Raises:
        ValueError: the two traces do not run the same ops (not fully convolutional).
    """
    large = _trace(network, step, True)
    small = _trace(network, step.model_copy(update={"input_shape_vox": small_vox}), False)
    return PeakModel(small, large)
