"""Segmentation on the training engine, on a tiny synthetic set: loss falls, Dice rises, a
tiny model beats a trivial baseline, and an interrupted run resumes to exactly the
uninterrupted result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.capabilities.segmentation.task import SegmentationTask
from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.capabilities.segmentation.training_data import Case
from kneescope.capabilities.segmentation.validation import dice_per_class, predict_case
from kneescope.inference.segmentation_model import load_model
from kneescope.models import NetworkConfig
from kneescope.training.config import TrainingFile, split_training_table
from kneescope.training.engine import FitResult, fit
from kneescope.training.progress import FitProgress

TINY = NetworkConfig(
    name="unet", spatial_dims=3, features=(8, 16, 32), strides=(2, 2), num_res_units=0
)
TINY2D = NetworkConfig(
    name="unet", spatial_dims=2, features=(8, 16, 32), strides=(2, 2), num_res_units=0
)


def phantom_case(seed: int, shape: tuple[int, int, int] = (20, 32, 32)) -> Case:
    """Ball 'femur' (1) with a 2-voxel 'cartilage' shell (2), box 'tibia' (3) below, noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-2, 2, 3)
    centre[1] -= 5
    r = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    radius = rng.uniform(6, 8)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[r < radius + 2] = 2
    labels[r < radius] = 1
    top = int(centre[1] + radius + 3)
    labels[3:-3, top : top + 8, 6:-6] = 3
    means = np.array([0.0, 1.0, 2.5, -1.2])
    image = means[labels] + rng.normal(0, 0.35, shape)
    return Case(name=f"p{seed}", image=image.astype(np.float32), labels=labels)


def tiny_config(**kw: object) -> TrainingFile:
    base: dict[str, object] = {
        "network": TINY,
        "mode": "3d",
        "patch_size_vox": (16, 16, 16),
        "batch_size": 2,
        "iterations": 80,
        "validate_every": 16,
        "checkpoint_every": 10,
        "lr": 1e-2,
        "augment": False,
        "precision": "fp32",
        "seed": 3,
        "threads": 1,
    }
    base.update(kw)
    return split_training_table(base)


def train(
    training: TrainingFile,
    train_cases: list[Case],
    val_cases: list[Case],
    *,
    run_dir: Path,
    model_path: Path | None = None,
    progress: Callable[[FitProgress], None] | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """The segmentation task on these cases (1 mm RAS grid), trained by the engine."""
    task = SegmentationTask(
        SegmentationTrainConfig.model_validate(training.options),
        train_cases,
        val_cases,
        spacing_mm=(1.0, 1.0, 1.0),
        orientation="RAS",
        seed=training.engine.seed,
    )
    return fit(
        task,
        training.engine,
        run_dir=run_dir,
        model_path=model_path,
        progress=progress,
        stop_after=stop_after,
    )


@pytest.fixture(scope="module")
def cases() -> tuple[list[Case], list[Case]]:
    return [phantom_case(s) for s in range(3)], [phantom_case(100)]


def test_loss_falls_dice_rises_and_beats_baseline(
    tmp_path: Path, cases: tuple[list[Case], list[Case]]
) -> None:
    seen: list[FitProgress] = []
    result = train(
        tiny_config(),
        cases[0],
        cases[1],
        run_dir=tmp_path / "run",
        model_path=tmp_path / "m.pt",
        progress=seen.append,
    )
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    dices = [h["dice_mean"] for h in result.history if "dice_mean" in h]
    assert len(dices) == 5 and dices[-1] > dices[0] + 0.2
    assert [h["score"] for h in result.history if "score" in h] == dices
    assert [p.iteration for p in seen] == list(range(1, 81))
    assert seen[-1].eta_s == 0.0
    # the model file loads (weights_only) and segments a held-out phantom well
    model = load_model(tmp_path / "m.pt")
    assert model.spec.data_fingerprint == result.model.data_fingerprint != ""
    assert model.spec.training["iterations"] == 80
    assert result.metrics is not None and result.metrics.score == dices[-1]
    val = cases[1][0]
    net = model.build()
    pred = predict_case(
        net,
        val.image,
        mode="3d",
        roi_size_vox=model.spec.roi_size_vox,
        autocast_dtype=None,
        device=torch.device("cpu"),
    )
    dice = dice_per_class(pred, val.labels, 10)[:3]
    baseline = dice_per_class(np.zeros_like(val.labels), val.labels, 10)[:3]  # all background
    assert min(dice) > 0.6, dice
    assert max(baseline) == 0.0
    assert result.metrics is not None and "surface_distance_mm" in result.metrics.values
    # surface distances (costly) only at the last validation
    assert "surface_distance_mm" in result.history[-1]
    assert "surface_distance_mm" not in result.history[15] and "dice" in result.history[15]


def test_resume_continues_where_it_stopped(
    tmp_path: Path, cases: tuple[list[Case], list[Case]]
) -> None:
    config = tiny_config(iterations=8, checkpoint_every=2, validate_every=100, augment=True)
    whole = train(config, cases[0], [], run_dir=tmp_path / "a")
    first = train(config, cases[0], [], run_dir=tmp_path / "b", stop_after=5)
    assert first.iterations_run == 5
    second = train(config, cases[0], [], run_dir=tmp_path / "b")
    assert second.resumed_from == 5
    assert second.iterations_run == 3
    assert [h["loss"] for h in second.history] == pytest.approx(
        [h["loss"] for h in whole.history], rel=1e-5
    )
    assert whole.model.state_dict.keys() == second.model.state_dict.keys()
    for k, v in whole.model.state_dict.items():
        torch.testing.assert_close(second.model.state_dict[k], v, rtol=1e-5, atol=1e-6)


def test_2d_mode_learns(tmp_path: Path, cases: tuple[list[Case], list[Case]]) -> None:
    config = tiny_config(
        network=TINY2D,
        mode="2d",
        patch_size_vox=(1, 32, 32),
        batch_size=6,
        iterations=30,
        validate_every=15,
    )
    result = train(config, cases[0], cases[1], run_dir=tmp_path / "run")
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    dices = [h["dice_mean"] for h in result.history if "dice_mean" in h]
    assert dices[-1] > dices[0]
    assert result.model.spec["mode"] == "2d"
