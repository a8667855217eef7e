"""The landmark capability learns on tiny synthetic data and round-trips its model file.

Truth: the synthetic generator's landmark positions in mm (anisotropic pixels, 0.8 x 0.6 mm).
Baseline: predicting every landmark at its mean training position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.capabilities.landmarks import (
    KIND,
    LandmarkConfig,
    LandmarkTask,
    load_landmark_model,
    predict_landmarks,
    synthetic_landmarks,
)
from kneescope.capabilities.landmarks.heatmaps import decode_heatmaps, gaussian_targets
from kneescope.capabilities.landmarks.results import result_columns, result_values
from kneescope.capabilities.landmarks.task import FACTORY
from kneescope.errors import ConfigError, InputError, ModelError
from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_file import ModelFile, load_model_file, save_model_file
from kneescope.training.engine import FitResult, fit
from kneescope.training.engine_config import EngineConfig
from kneescope.training.task import TrainingTask
from kneescope.workspace import Workspace

SPACING = (0.8, 0.6)
SIZE = (32, 32)
TRAIN_N, TRAIN_SEED = 160, 21
SMALL_UNET = NetworkConfig(
    name="unet", spatial_dims=2, out_channels=3, features=(8, 16, 32), strides=(2, 2)
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LandmarkTask, FitResult]:
    """A small UNet trained for 60 iterations of 16 images of 32 x 32 (seconds on a CPU)."""
    train = synthetic_landmarks(TRAIN_N, size_vox=SIZE, spacing_mm=SPACING, seed=TRAIN_SEED)
    validation = synthetic_landmarks(60, size_vox=SIZE, spacing_mm=SPACING, seed=22)
    config = LandmarkConfig(heatmap_sigma_mm=1.5, input_size_vox=SIZE, network=SMALL_UNET)
    task = LandmarkTask(config, train, validation, seed=1)
    engine = EngineConfig(
        iterations=60,
        batch_size=16,
        lr=3e-3,
        schedule="constant",
        validate_every=60,
        checkpoint_every=1000,
        precision="fp32",
    )
    root = tmp_path_factory.mktemp("landmarks")
    result = fit(task, engine, run_dir=root / "run", model_path=root / "points.pt")
    return task, result


def test_task_satisfies_the_engine_protocol() -> None:
    data = synthetic_landmarks(6, spacing_mm=SPACING, seed=1)
    task = LandmarkTask(LandmarkConfig(), data, data)
    assert isinstance(task, TrainingTask)
    assert task.kind == KIND == "landmarks"
    assert task.network.out_channels == 3
    assert task.spacing_mm == SPACING
    first, again = task.batch(2, 4), task.batch(2, 4)
    assert torch.equal(first.inputs, again.inputs)
    assert torch.equal(first.targets, again.targets)
    assert first.inputs.shape == (4, 1, 48, 48)
    assert first.targets.shape == (4, 3, 2)


def test_landmarks_beat_the_mean_position_on_held_out_images(
    trained: tuple[LandmarkTask, FitResult],
) -> None:
    _, result = trained
    assert result.model_path is not None
    train = synthetic_landmarks(TRAIN_N, size_vox=SIZE, spacing_mm=SPACING, seed=TRAIN_SEED)
    held_out = synthetic_landmarks(80, size_vox=SIZE, spacing_mm=SPACING, seed=99)
    mean_position = train.positions_mm.mean(axis=0)  # (landmarks, 2) mm
    baseline_mm = np.linalg.norm(held_out.positions_mm - mean_position, axis=-1).mean()
    prediction = predict_landmarks(result.model_path, held_out.images, spacing_mm=SPACING)
    error_mm = np.linalg.norm(prediction.positions_mm - held_out.positions_mm, axis=-1)
    assert baseline_mm > 4.0
    assert error_mm.mean() < 0.4 * baseline_mm, (error_mm.mean(), baseline_mm)
    assert result.metrics is not None
    assert -result.metrics.score < 0.4 * baseline_mm


def test_model_file_round_trip_predicts_what_the_trained_network_predicts(
    trained: tuple[LandmarkTask, FitResult],
) -> None:
    task, result = trained
    assert result.model_path is not None
    loaded = load_model_file(result.model_path, kind=KIND)
    assert loaded.spec["landmarks"] == ["blob", "ring", "corner"]
    assert loaded.spec["spacing_mm"] == list(SPACING)
    assert loaded.spec["heatmap_sigma_mm"] == 1.5
    assert loaded.data_fingerprint == task.data_fingerprint
    images = synthetic_landmarks(10, size_vox=SIZE, spacing_mm=SPACING, seed=5).images
    in_memory = predict_landmarks(_as_model(result), images)
    from_file = predict_landmarks(load_landmark_model(result.model_path), images)
    np.testing.assert_allclose(from_file.positions_mm, in_memory.positions_mm, atol=1e-9)
    values = result_values(from_file, 0)
    assert set(values) == {c.name for c in result_columns(task.landmarks)}
    assert values["ring_column_mm"] == pytest.approx(from_file.positions_mm[0, 1, 1])
    assert {c.unit for c in result_columns(task.landmarks)} == {"mm"}


def _as_model(result: FitResult) -> object:
    """The trained weights held in memory, wrapped like a loaded model (no file involved)."""
    from kneescope.capabilities.landmarks.predict import LandmarkModel
    from kneescope.capabilities.landmarks.spec import LandmarkSpec

    raw = {k: v for k, v in result.model.spec.items() if k != "training"}
    return LandmarkModel(
        spec=LandmarkSpec.model_validate(raw),
        network=result.model.build(),
        model_file=result.model,
        device=torch.device("cpu"),
    )


def test_a_model_file_of_another_kind_is_refused_with_one_line(tmp_path: Path) -> None:
    data = synthetic_landmarks(2, seed=1)
    task = LandmarkTask(LandmarkConfig(), data, data)
    path = save_model_file(
        ModelFile(
            kind="classification",
            network=task.network,
            spec={"classes": ["a", "b"]},
            state_dict=build_network(task.network).state_dict(),
        ),
        tmp_path / "other.pt",
    )
    with pytest.raises(ModelError) as info:
        load_landmark_model(path)
    message = str(info.value)
    assert "classification model, not a landmarks model" in message
    assert "\n" not in message


def test_wrong_spacing_or_size_is_refused(trained: tuple[LandmarkTask, FitResult]) -> None:
    _, result = trained
    assert result.model_path is not None
    images = synthetic_landmarks(2, size_vox=SIZE, spacing_mm=SPACING, seed=3).images
    with pytest.raises(InputError, match="resample the images to the model's spacing"):
        predict_landmarks(result.model_path, images, spacing_mm=(0.6, 0.8))
    with pytest.raises(InputError, match="must be 32 x 32"):
        predict_landmarks(result.model_path, images[:, :24])


def test_heatmap_decoding_recovers_sub_pixel_positions() -> None:
    truth = torch.tensor([[[10.3, 20.7], [30.0, 5.25]]])
    sigma = (2.0, 1.5)
    heat = gaussian_targets(truth, (48, 40), sigma)
    assert torch.allclose(heat.sum(dim=(-2, -1)), torch.ones(1, 2))
    found = decode_heatmaps(torch.log(heat.clamp_min(1e-30)), sigma)
    torch.testing.assert_close(found, truth, atol=0.02, rtol=0.0)


def test_synthetic_truth_is_in_mm_and_seeded() -> None:
    a = synthetic_landmarks(5, spacing_mm=(0.5, 2.0), seed=8)
    b = synthetic_landmarks(5, spacing_mm=(0.5, 2.0), seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    clean = synthetic_landmarks(20, landmarks=("blob",), spacing_mm=(0.5, 2.0), noise=0.0, seed=9)
    vox = clean.positions_mm[:, 0] / np.array([0.5, 2.0])  # mm -> pixels
    peaks = np.array([np.unravel_index(np.argmax(img), img.shape) for img in clean.images])
    assert np.abs(peaks - vox).max() <= 0.75  # the blob's brightest pixel is its centre
    corner = synthetic_landmarks(
        10, landmarks=("corner",), spacing_mm=(0.6, 0.6), noise=0.0, seed=2
    )
    for image, (r, c) in zip(corner.images, corner.positions_mm[:, 0] / 0.6, strict=True):
        inside = image[round(r) + 2, round(c) + 2]
        outside = image[round(r) - 2, round(c) - 2]
        assert inside - outside > 0.6  # the square starts at the corner


def test_config_and_factory_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiples of"):
        LandmarkConfig(input_size_vox=(50, 48))
    data = synthetic_landmarks(2, spacing_mm=SPACING, seed=1)
    with pytest.raises(InputError, match="pixel spacing"):
        LandmarkTask(LandmarkConfig(spacing_mm=(1.0, 1.0)), data, data)
    workspace = Workspace(tmp_path)
    with pytest.raises(ConfigError, match=r"\[data\] table"):
        FACTORY.build(LandmarkConfig(), workspace=workspace, seed=0, base_dir=tmp_path)
    config = LandmarkConfig.model_validate(
        {"data": {"train": 4, "validation": 2, "landmarks": ["ring", "blob"]}}
    )
    task = FACTORY.build(config, workspace=workspace, seed=0, base_dir=tmp_path)
    assert task.landmarks == ("ring", "blob")
    assert task.network.out_channels == 2
