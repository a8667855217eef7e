"""Hostile inputs to the classification and landmark capabilities: damaged or forged model
files, odd image arrays, inconsistent training data. Each is refused with one line, before any
large allocation; none gives a silent wrong answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kneescope.capabilities.classification import (
    ClassificationConfig,
    ClassificationData,
    ClassificationTask,
    load_classifier,
    predict_classes,
    synthetic_classification,
)
from kneescope.capabilities.landmarks import (
    LandmarkConfig,
    LandmarkData,
    LandmarkTask,
    load_landmark_model,
    synthetic_landmarks,
)
from kneescope.errors import InputError, ModelError
from kneescope.models import build_network
from kneescope.models.model_file import ModelFile, save_model_file


def _classifier_file(tmp_path: Path, **spec_changes: Any) -> Path:
    data = synthetic_classification(4, seed=1)
    task = ClassificationTask(ClassificationConfig(), data, data)
    spec = {k: v for k, v in task.model_spec(None).items() if k != "training"}
    spec.update(spec_changes)
    model = ModelFile(
        kind="classification",
        network=task.network,
        spec=spec,
        state_dict=build_network(task.network).state_dict(),
    )
    return save_model_file(model, tmp_path / "classifier.pt")


def _landmark_file(tmp_path: Path, **spec_changes: Any) -> Path:
    data = synthetic_landmarks(2, seed=1)
    task = LandmarkTask(LandmarkConfig(), data, data)
    spec = {k: v for k, v in task.model_spec(None).items() if k != "training"}
    spec.update(spec_changes)
    model = ModelFile(
        kind="landmarks",
        network=task.network,
        spec=spec,
        state_dict=build_network(task.network).state_dict(),
    )
    return save_model_file(model, tmp_path / "landmarks.pt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_size_vox": [100_000, 100_000]}, "input_size_vox"),
        ({"classes": "abc"}, "classes"),
        ({"classes": ["a", "a", "b"]}, "repeat"),
        ({"unexpected": 1}, "unexpected"),
        ({"input_size_vox": [64, 64]}, "does not fit"),
    ],
)
def test_forged_classifier_specs_are_refused(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = _classifier_file(tmp_path, **change)
    with pytest.raises(ModelError, match=message) as info:
        load_classifier(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spacing_mm": [0.0, 1.0]}, "spacing_mm"),
        ({"spacing_mm": [float("nan"), 1.0]}, "spacing_mm"),
        ({"heatmap_sigma_mm": -1.0}, "heatmap_sigma_mm"),
        ({"landmarks": ["only_one"]}, "does not fit"),
        ({"input_size_vox": [50, 50]}, "does not fit"),
    ],
)
def test_forged_landmark_specs_are_refused(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = _landmark_file(tmp_path, **change)
    with pytest.raises(ModelError, match=message) as info:
        load_landmark_model(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 32, 32, 1), np.float32),  # an extra axis
        np.zeros((0, 32), np.float32),
        np.full((32, 32), np.inf, np.float32),
        np.zeros((32, 32), np.complex64),
        np.array([["a"] * 32] * 32),
    ],
)
def test_odd_image_arrays_are_refused(tmp_path: Path, images: np.ndarray[Any, Any]) -> None:
    path = _classifier_file(tmp_path)
    with pytest.raises(InputError) as info:
        predict_classes(path, images)
    assert "\n" not in str(info.value)


def test_a_constant_image_is_classified_without_nan(tmp_path: Path) -> None:
    prediction = predict_classes(_classifier_file(tmp_path), np.full((32, 32), 7, np.uint16))
    assert np.isfinite(prediction.probabilities).all()
    assert prediction.probabilities.sum() == pytest.approx(1.0)


def test_inconsistent_training_data_is_refused() -> None:
    data = synthetic_classification(6, seed=2)
    bad_labels = ClassificationData(
        images=data.images, labels=np.full(6, 5, np.int64), classes=data.classes
    )
    with pytest.raises(InputError, match="labels outside"):
        ClassificationTask(ClassificationConfig(), bad_labels, data)
    points = synthetic_landmarks(3, seed=2)
    missing = points.positions_mm.copy()
    missing[1, 2] = np.nan
    holes = LandmarkData(points.images, missing, points.landmarks, points.spacing_mm)
    with pytest.raises(InputError, match="missing"):
        LandmarkTask(LandmarkConfig(), holes, points)
    outside = LandmarkData(
        points.images, points.positions_mm + 40.0, points.landmarks, points.spacing_mm
    )
    with pytest.raises(InputError, match="outside their images"):
        LandmarkTask(LandmarkConfig(), points, outside)
    other_size = synthetic_landmarks(3, size_vox=(64, 64), seed=2)
    with pytest.raises(InputError, match="48 x 48"):
        LandmarkTask(LandmarkConfig(), other_size, points)


def test_names_that_collide_as_column_names_are_refused() -> None:
    from kneescope.capabilities.classification import result_columns as class_columns
    from kneescope.capabilities.landmarks import result_columns as landmark_columns

    with pytest.raises(ValueError, match="repeated column names"):
        class_columns(("KL 1", "kl-1"))
    with pytest.raises(ValueError, match="repeated column names"):
        landmark_columns(("hip centre", "Hip-Centre"))
    assert len(landmark_columns(("hip", "knee", "ankle"))) == 6
