"""Measure the real peak memory of steps on the CPU, each case in a fresh process.

The worker (``python -m kneescope.memory.measure``, cases as JSON on stdin) runs with glibc
malloc tuned to return freed memory to the OS (``MALLOC_MMAP_THRESHOLD_=65536``,
``MALLOC_TRIM_THRESHOLD_=0``), warms the network up on a small input (kernels, thread pools),
then resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) and runs the step.
Measured peak = parameter bytes + (peak RSS during the step - RSS before it). The same step
is also tracked op by op with real tensors (:class:`AllocationTracker`), as a second figure.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from kneescope.config import FROZEN
from kneescope.errors import ResourceError
from kneescope.memory.release import release_free_memory
from kneescope.memory.step import StepConfig
from kneescope.models import NetworkConfig, divisor

_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


class Measurement(BaseModel):
    """A measured CPU step: ``peak_rss_bytes`` (RSS-based) and ``tracked_peak_bytes``."""

    model_config = FROZEN

    network: NetworkConfig
    step: StepConfig
    peak_rss_bytes: int
    tracked_peak_bytes: int
    seconds: float
    cold: bool


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ResourceError(f"/proc/self/status has no {field}; RSS measurement needs Linux")


def _release() -> None:
    gc.collect()
    release_free_memory()


def _measure_one(network: NetworkConfig, step: StepConfig, cold: bool) -> Measurement:
    import torch

    from kneescope.memory.step import run_steps
    from kneescope.memory.tracker import AllocationTracker
    from kneescope.models import build_network, is_classifier

    if step.offload:
        raise ResourceError("offload cannot be measured on the CPU (host and device are one)")
    torch.manual_seed(0)
    net = build_network(network)
    classifier = is_classifier(network)
    args = (classifier, network.out_channels, network.in_channels)
    if network.name == "vgg_classifier":
        small = step.input_shape_vox  # its FC layer takes this size only
    elif classifier:
        small = (32,) * network.spatial_dims  # global pooling: any size of 32 or more
    else:
        small = tuple(2 * d for d in divisor(network))
    # Warm-up: load kernels, start thread pools, grow library caches.
    warm = step.model_copy(update={"input_shape_vox": small if cold else step.input_shape_vox})
    run_steps(net, warm, *args, AllocationTracker(), torch.device("cpu"), "none", count_flops=False)
    for p in net.parameters():
        p.grad = None
    weights = sum(t.untyped_storage().nbytes() for t in [*net.parameters(), *net.buffers()])
    _release()
    baseline_kib = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    tracker = AllocationTracker(workspace=False)
    run_steps(net, step, *args, tracker, torch.device("cpu"), "none", count_flops=False)
    seconds = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM")
    return Measurement(
        network=network,
        step=step,
        peak_rss_bytes=weights + (peak_kib - baseline_kib) * 1024,
        tracked_peak_bytes=tracker.peak_bytes,
        seconds=seconds,
        cold=cold,
    )


def measure_cpu(
    cases: list[tuple[NetworkConfig, StepConfig]],
    threads: int = 1,
    cold: bool = False,
    timeout_s: float = 600.0,
) -> list[Measurement]:
    """Run each step for real on the CPU, in one fresh process, and measure its peak.

    ``cold=False`` (steady state): the warm-up runs the same step once, so one-time library
    caches (oneDNN scratchpads, primitive caches) are in the baseline, as in a training loop
    after its first iteration. ``cold=True``: the warm-up uses a tiny input, so the growth of
    those caches counts in the measured peak.

    Raises:
        ResourceError: the worker failed or timed out.
    """
    payload = json.dumps(
        {
            "cold": cold,
            "cases": [
                {"network": n.model_dump(mode="json"), "step": s.model_dump(mode="json")}
                for n, s in cases
            ],
        }
    )
    env = {**os.environ, **_MALLOC_ENV, "OMP_NUM_THREADS": str(threads)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kneescope.memory.measure"],
            input=payload,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ResourceError(
            f"measurement took over {timeout_s:.0f} s; use smaller inputs or fewer cases"
        ) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ResourceError(f"measurement worker failed (exit {proc.returncode}): {last}")
    return [Measurement.model_validate_json(line) for line in proc.stdout.split() if line]


def _main() -> None:
    data = json.loads(sys.stdin.read())
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    for case in data["cases"]:
        result = _measure_one(
            NetworkConfig.model_validate(case["network"]),
            StepConfig.model_validate(case["step"]),
            cold=bool(data["cold"]),
        )
        sys.stdout.write(result.model_dump_json() + "\n")
        sys.stdout.flush()
        _release()


if __name__ == "__main__":
    _main()
