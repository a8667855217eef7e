"""The slab step (kneescope.memory.slabs): exact, predicted like a real step, and smaller.

Exactness is checked in float64 against the plain ``loss.backward()`` of the same DynUNet
(loss and every parameter's gradient), with instance norms whose affine weights are not the
identity, a batch of two (per-sample statistics) and a slab thickness that does not divide
the volume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from monai.losses.dice import DiceCELoss
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn import functional

from kneescope.errors import ConfigError
from kneescope.memory import AllocationTracker, StepConfig, predict_step
from kneescope.memory.planner import plan_training
from kneescope.memory.slabs import DiceCESlabLoss, check_slab_network, slab_step
from kneescope.memory.step import run_steps
from kneescope.models import NetworkConfig, build_network, preset

TINY = NetworkConfig(
    name="dynunet",
    spatial_dims=3,
    features=(4, 8, 8, 8),
    strides=(1, 2, 2, 2),
    out_channels=3,
)
"""The nnU-Net U-Net's layout (DynUNet: 3^3 convs, instance norm, leaky ReLU, a stride-1 first
stage) with 4 stages (divisor 8) and few channels: small enough for float64 in seconds."""


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Predictions cached in the test's folder, not the user's."""
    monkeypatch.setenv("KNEESCOPE_CACHE_DIR", str(tmp_path / "cache"))


def _net(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_network(TINY).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 1:  # instance-norm weights and biases, the head's bias
                p.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("dice", [False, True])
def test_slab_step_gives_the_plain_loss_and_gradients(dice: bool) -> None:
    batch, slab_vox = 2, 10  # per-sample statistics; slabs of 10, 10 and 4 slices
    net = _net(torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 24, 16, 16, generator=gen, dtype=torch.float64) * 2 + 1
    y = torch.randint(0, 3, (batch, 1, 24, 16, 16), generator=gen)
    if dice:  # the segmentation task's loss
        plain = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=False)(net(x), y)
    else:
        plain = functional.cross_entropy(net(x), y[:, 0])
    plain.backward()  # type: ignore[no-untyped-call]
    want = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)

    # with Dice, gradients of half the loss (as with 2 accumulation steps): halved below
    loss_fn, grad_scale = (DiceCESlabLoss(), 0.5) if dice else (None, 1.0)
    loss = slab_step(net, x, y, slab_vox, loss_fn=loss_fn, grad_scale=grad_scale)

    assert loss.item() == pytest.approx(plain.item(), rel=1e-12)
    got = dict(net.named_parameters())
    assert set(want) == {n for n, p in got.items() if p.grad is not None}
    for name, grad in want.items():
        g = got[name].grad
        assert g is not None
        g = g / grad_scale
        scale = grad.abs().max().item()
        assert scale > 0
        assert (g - grad).abs().max().item() <= 1e-9 * scale, name


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _tracked(step: StepConfig, fake: bool) -> tuple[int, int]:
    """(peak bytes, FLOPs) of one steady-state step, tracked without the workspace term."""
    tracker = AllocationTracker(workspace=False)
    with FakeTensorMode() if fake else _nothing():
        torch.manual_seed(0)
        net = build_network(TINY)
        counters = run_steps(
            net, step, False, TINY.out_channels, TINY.in_channels, tracker,
            torch.device("cpu"), count_flops=True,
        )  # fmt: skip
    return tracker.peak_bytes, counters.flops


def test_prediction_of_a_slab_step_equals_the_real_step() -> None:
    step = StepConfig(input_shape_vox=(24, 16, 16), slab_vox=8)
    real = _tracked(step, fake=False)
    assert _tracked(step, fake=True) == real
    plain_peak, plain_flops = _tracked(step.model_copy(update={"slab_vox": 0}), fake=True)
    assert real[0] < plain_peak  # the full-resolution tensors are never whole
    assert real[1] > plain_flops  # and are recomputed


def test_slab_step_refuses_networks_it_cannot_run_exactly() -> None:
    with pytest.raises(ConfigError, match="DynUNet"):
        check_slab_network(build_network(preset("unet3d-small")), 16)
    with pytest.raises(ConfigError, match="even"):
        check_slab_network(build_network(TINY), 7)
    with pytest.raises(ConfigError, match="deep supervision"):
        check_slab_network(build_network(TINY.model_copy(update={"deep_supervision": True})), 16)


@pytest.mark.slow
def test_nnunet_unet_trains_the_whole_volume_within_11_gb_with_slabs() -> None:
    """unet3d-nnunet (31.2 M parameters) at 160x384x384, bf16, cuda kernels, Adam foreach:
    the plain step needs 30.7 GB, in slabs of 16 slices with per-block checkpointing of the
    inner levels it needs <= 11 GB (margin included)."""
    net = preset("unet3d-nnunet")
    step = StepConfig(
        input_shape_vox=(160, 384, 384),
        precision="bf16",
        device="cuda",
        foreach=True,
        slab_vox=16,
        checkpointing="per_block",
    )
    estimate = predict_step(net, step)
    assert estimate.parameters >= 30_000_000
    assert estimate.required_bytes <= 11 * 10**9


def test_planner_fits_the_whole_volume_in_slabs_when_the_plain_step_does_not() -> None:
    shape = (48, 32, 32)
    base = StepConfig(input_shape_vox=shape, precision="fp32", device="cuda", foreach=True)
    plain = predict_step(TINY, base).required_bytes
    slab = predict_step(TINY, base.model_copy(update={"slab_vox": 8})).required_bytes
    assert slab < plain
    budget = (slab + plain) // 2
    kw = {"precisions": ("fp32",), "checkpointing": ("off",), "offload": (False,)}
    assert plan_training(TINY, shape, None, budget, **kw).full_volume is None  # type: ignore[arg-type]
    full = plan_training(TINY, shape, None, budget, slabs=(8,), **kw).full_volume  # type: ignore[arg-type]
    assert full is not None
    assert full.slab_vox == 8
    assert full.required_bytes == slab <= budget
