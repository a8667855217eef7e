"""Predict peak memory, its breakdown and FLOPs of a step, without allocating tensors.

The network is built and the step run inside ``FakeTensorMode``: every aten op computes
output shapes and dtypes only, while :class:`~kneescope.memory.tracker.AllocationTracker`
accounts storages exactly as a real run would and ``FlopCounterMode`` counts FLOPs
(recomputation by checkpointing included). Results are cached per (network, step).

Safety margin: :data:`MARGIN_FRACTION` of the peak plus :data:`MARGIN_RESERVE_BYTES`
for what the tracker cannot see (convolution workspaces, allocator rounding and
fragmentation, the CUDA context).
"""

from __future__ import annotations

import functools
import time

import torch
from pydantic import BaseModel

from kneescope.config import FROZEN
from kneescope.memory.step import StepConfig, run_steps
from kneescope.memory.tracker import CATEGORIES, AllocationTracker
from kneescope.models import NetworkConfig, build_network, count_parameters, model_fingerprint

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

    The peak covers two consecutive steps, so a training peak includes the optimizer state
    (steady state). Breakdown keys: :data:`~kneescope.memory.tracker.CATEGORIES`.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    start = time.perf_counter()
    tracker = AllocationTracker()
    with FakeTensorMode():
        torch.manual_seed(0)
        net = build_network(network)
        counters = run_steps(
            net,
            step,
            classifier=network.name == "vgg_classifier",
            out_channels=network.out_channels,
            in_channels=network.in_channels,
            tracker=tracker,
            device=torch.device("cpu"),
            offload="simulate",
        )
    breakdown = tracker.peak_breakdown()
    peak = tracker.peak_bytes
    margin = margin_for(peak)
    return MemoryEstimate(
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
