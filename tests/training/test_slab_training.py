"""The training engine with slabs (``slab_vox``): the same training as the plain step.

The segmentation task (Dice + cross-entropy) on tiny phantoms with a small DynUNet of the
nnU-Net layout (3^3 convolutions, affine instance norm, leaky ReLU, a stride-1 first stage),
trained 2 iterations of 2 accumulation micro-steps of batch 2, with the full-resolution
stage in slabs of 6 slices (16x8x8 patches: slabs of 6, 6 and 4), ends with the parameters
of the plain step's 2 iterations, to fp32 round-off. Networks and losses the slab step
cannot run exactly are refused before training, in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kneescope.capabilities.segmentation.task import SegmentationTask
from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.capabilities.segmentation.training_data import Case
from kneescope.errors import ConfigError
from kneescope.models import NetworkConfig, build_network
from kneescope.training.engine import FitResult, fit
from kneescope.training.engine_config import EngineConfig
from kneescope.training.progress import FitProgress
from kneescope.training.task import Metrics, TaskBatch

DYNUNET = NetworkConfig(name="dynunet", spatial_dims=3, features=(4, 8, 8), strides=(1, 2, 2))
UNET = NetworkConfig(name="unet", spatial_dims=3, features=(4, 8), strides=(2,), num_res_units=0)


def phantom(seed: int, shape: tuple[int, int, int] = (20, 24, 24)) -> Case:
    """A ball (label 1) with a shell (2) and a box (3) below it, in noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-2, 2, 3)
    r = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[r < 7] = 2
    labels[r < 5] = 1
    labels[3:-3, 19:23, 4:-4] = 3
    image = np.array([0.0, 1.0, 2.5, -1.2])[labels] + rng.normal(0, 0.35, shape)
    return Case(name=f"p{seed}", image=image.astype(np.float32), labels=labels)


def _task(network: NetworkConfig) -> SegmentationTask:
    config = SegmentationTrainConfig(
        network=network, mode="3d", patch_size_vox=(16, 8, 8), augment=False
    )
    cases = [phantom(s) for s in range(2)]
    return SegmentationTask(
        config, cases, [], spacing_mm=(1.0, 1.0, 1.0), orientation="RAS", seed=3
    )


def _fit(tmp_path: Path, task: Any, **kw: Any) -> FitResult:
    config = EngineConfig(
        iterations=2, batch_size=2, accumulation=2, lr=1e-2, precision="fp32", seed=3,
        threads=1, checkpointing="off", clip_grad_norm=1e6, **kw,
    )  # fmt: skip
    return fit(task, config, run_dir=tmp_path / f"run{sorted(kw.items())}", model_path=None)


def _fit_seeing_gradients(
    tmp_path: Path, **kw: Any
) -> tuple[FitResult, list[dict[str, torch.Tensor]]]:
    """A run of the segmentation task and each iteration's accumulated gradients (left in
    ``.grad`` after the optimiser step; clipping is off: ``clip_grad_norm`` 1e6)."""
    task = _task(DYNUNET)
    nets: list[torch.nn.Module] = []
    task.initialise = nets.append  # type: ignore[attr-defined]  # the engine's hook
    grads: list[dict[str, torch.Tensor]] = []

    def seen(_: FitProgress) -> None:
        params = nets[0].named_parameters()
        grads.append({n: p.grad.clone() for n, p in params if p.grad is not None})

    config = EngineConfig(
        iterations=2, batch_size=2, accumulation=2, lr=1e-2, precision="fp32", seed=3,
        threads=1, checkpointing="off", clip_grad_norm=1e6, **kw,
    )  # fmt: skip
    run_dir = tmp_path / f"run{sorted(kw.items())}"
    return fit(task, config, run_dir=run_dir, model_path=None, progress=seen), grads


def test_slab_steps_train_like_plain_steps(tmp_path: Path) -> None:
    plain, plain_grads = _fit_seeing_gradients(tmp_path)
    slabs, slab_grads = _fit_seeing_gradients(tmp_path, slab_vox=6)
    assert slabs.plan["slab_vox"] == 6 and "slab_vox" not in plain.plan
    assert slabs.plan["patch_size_vox"] == [16, 8, 8]
    losses = [row["loss"] for row in slabs.history]
    assert losses == pytest.approx([row["loss"] for row in plain.history], rel=1e-5)

    # the gradients of each optimiser step (2 micro-steps, each scaled by 1/2)
    assert len(plain_grads) == len(slab_grads) == 2
    for want, got in zip(plain_grads, slab_grads, strict=True):
        assert set(want) == set(got) and len(want) >= 20
        scale = max(g.abs().max().item() for g in want.values())
        worst = max((got[n] - want[n]).abs().max().item() for n in want)
        assert worst <= 1e-4 * scale, (worst, scale)

    # and the weights AdamW made of them: fp32 round-off, amplified where a gradient is ~0
    torch.manual_seed(3)  # the engine's initial weights
    start = build_network(plain.model.network).state_dict()
    a, b = plain.model.state_dict, slabs.model.state_dict
    assert set(a) == set(b) == set(start)
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    assert moved > 1e-3  # the weights did change (by about lr per step)
    worst = max((b[k] - a[k]).abs().max().item() for k in a)
    assert worst <= 1e-2 * moved, (worst, moved)


class _NoSlabLoss:
    """A task on a DynUNet whose loss has no slab form (no ``slab_loss``)."""

    kind = "plain-loss"
    network = DYNUNET.model_copy(update={"out_channels": 2})
    data_fingerprint = "0"
    train_size = 1
    val_size = 0

    def batch(self, index: int, size: int) -> TaskBatch:
        raise AssertionError("refused before the first batch")

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(outputs, targets)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        raise AssertionError

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        return {}


def test_slab_steps_refuse_what_they_cannot_run_exactly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slab_vox = 6: slab steps need a DynUNet.*slab_vox = 0"):
        _fit(tmp_path, _task(UNET), slab_vox=6)
    with pytest.raises(ConfigError, match="slab thickness 7 must be an even number"):
        _fit(tmp_path, _task(DYNUNET), slab_vox=7)
    with pytest.raises(ConfigError, match="plain-loss task's loss has no slab form"):
        _fit(tmp_path, _NoSlabLoss(), slab_vox=6)


def test_slab_vox_is_an_engine_key_of_the_training_file() -> None:
    from kneescope.training.config import split_training_table

    training = split_training_table({"network": "unet3d-nnunet", "slab_vox": 16})
    assert training.engine.slab_vox == 16 and "slab_vox" not in training.options
    with pytest.raises(ConfigError, match="slab_vox"):
        split_training_table({"slab_vox": -2})
