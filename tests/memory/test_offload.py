"""Offload of saved activations: the prediction holds the unpacked copies during backward.

``simulated_offload`` is ``save_on_cpu`` with the host on the untracked side of the tracker.
On real CPU tensors it really copies (pack: into an untracked buffer; unpack: back into a new
tracked tensor), so the tracker's figure on a real step is the device memory that
``save_on_cpu`` would use; the fake-tensor prediction must reproduce it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from kneescope.memory import AllocationTracker, StepConfig, predict_step
from kneescope.memory.step import run_steps
from kneescope.models import NetworkConfig, build_network, preset


class BackwardPeakTracker(AllocationTracker):
    """Also records the most live bytes seen after any op of the backward pass, and the
    bytes of all storages created in it."""

    backward_peak = 0
    backward_allocated = 0

    def _add(self, tensor: torch.Tensor) -> int | None:
        before = len(self._live)
        serial = super()._add(tensor)
        if len(self._live) > before and self.phase == "backward":
            self.backward_allocated += int(tensor.untyped_storage().nbytes())
        return serial

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if self.phase == "backward":
            self.backward_peak = max(self.backward_peak, self.current_bytes)
        return out


NET = preset("unet3d-small")
STEP = StepConfig(input_shape_vox=(32, 32, 32), precision="bf16", offload=True)


def _run(
    network: NetworkConfig, step: StepConfig, fake: bool, offload: str
) -> tuple[BackwardPeakTracker, int]:
    """(tracker, host offload bytes) of one step, without workspace term."""
    tracker = BackwardPeakTracker(workspace=False)
    with FakeTensorMode() if fake else _nothing():
        torch.manual_seed(0)
        net = build_network(network)
        counters = run_steps(
            net, step, False, network.out_channels, network.in_channels, tracker,
            torch.device("cpu"), offload=offload, count_flops=False,
        )  # fmt: skip
    return tracker, counters.host_offload_bytes


def _peak(network: NetworkConfig, step: StepConfig, fake: bool, offload: str) -> tuple[int, int]:
    """(tracked peak bytes, host offload bytes) of one step, without workspace term."""
    tracker, host = _run(network, step, fake, offload)
    return tracker.peak_bytes, host


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_offload_prediction_equals_a_real_step_with_copying_hooks() -> None:
    real_peak, real_host = _peak(NET, STEP, fake=False, offload="simulate")
    fake_peak, fake_host = _peak(NET, STEP, fake=True, offload="simulate")
    assert real_host > 0
    assert abs(fake_host / real_host - 1) < 0.001, (fake_host, real_host)
    assert abs(fake_peak / real_peak - 1) < 0.01, (fake_peak, real_peak)
    # the offloaded step needs less than keeping everything on the device ...
    kept_peak, _ = _peak(NET, STEP, fake=False, offload="none")
    assert real_peak < kept_peak
    # ... and the host holds at least every saved activation once
    assert real_host > kept_peak - real_peak


def test_offload_prediction_includes_the_unpacked_copies() -> None:
    """Every offloaded byte comes back as a new device tensor during backward, and the live
    bytes of the backward pass match a real step with copying hooks."""
    fake, host = _run(NET, STEP, fake=True, offload="simulate")
    real, _ = _run(NET, STEP, fake=False, offload="simulate")
    kept, _ = _run(NET, STEP, fake=True, offload="none")
    assert fake.backward_peak == real.backward_peak
    unpacked = fake.backward_allocated - kept.backward_allocated
    assert abs(unpacked / host - 1) < 0.01, (unpacked, host)


@pytest.mark.parametrize("checkpointing", ["off", "per_block"])
def test_offload_prediction_counts_host_bytes_and_lowers_the_peak(checkpointing: str) -> None:
    step = STEP.model_copy(update={"checkpointing": checkpointing})
    offloaded = predict_step(NET, step)
    kept = predict_step(NET, step.model_copy(update={"offload": False}))
    assert offloaded.host_offload_bytes > 0 and kept.host_offload_bytes == 0
    assert offloaded.peak_bytes <= kept.peak_bytes
