"""The classification capability learns on tiny synthetic data and round-trips its model file.

Truth: the synthetic generator's class of each image (the orientation of its bar). Baseline:
always answering the training set's most frequent class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.capabilities.classification import (
    KIND,
    ClassificationConfig,
    ClassificationTask,
    load_classifier,
    predict_classes,
    synthetic_classification,
)
from kneescope.capabilities.classification.results import result_columns, result_values
from kneescope.capabilities.classification.task import FACTORY
from kneescope.errors import ConfigError, InputError, ModelError
from kneescope.models import build_network
from kneescope.models.model_file import ModelFile, load_model_file, save_model_file
from kneescope.training.engine import FitResult, fit
from kneescope.training.engine_config import EngineConfig
from kneescope.training.task import TrainingTask
from kneescope.transforms.image_batch import normalise_images
from kneescope.workspace import Workspace

WEIGHTS = (0.6, 0.2, 0.2)  # skewed: the majority baseline is about 0.6
TRAIN_N, TRAIN_SEED = 240, 11


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClassificationTask, FitResult]:
    """A classifier trained for 60 iterations of 16 images (a few seconds on a CPU)."""
    train = synthetic_classification(TRAIN_N, class_weights=WEIGHTS, seed=TRAIN_SEED)
    validation = synthetic_classification(150, class_weights=WEIGHTS, seed=12)
    task = ClassificationTask(ClassificationConfig(), train, validation, seed=3)
    engine = EngineConfig(
        iterations=60,
        batch_size=16,
        lr=3e-3,
        schedule="constant",
        validate_every=60,
        checkpoint_every=1000,
        precision="fp32",
    )
    root = tmp_path_factory.mktemp("classification")
    result = fit(task, engine, run_dir=root / "run", model_path=root / "bars.pt")
    return task, result


def test_task_satisfies_the_engine_protocol() -> None:
    data = synthetic_classification(8, seed=1)
    task = ClassificationTask(ClassificationConfig(), data, data)
    assert isinstance(task, TrainingTask)
    assert task.kind == KIND == "classification"
    assert task.network.out_channels == 3
    first, again = task.batch(5, 6), task.batch(5, 6)
    assert torch.equal(first.inputs, again.inputs)
    assert torch.equal(first.targets, again.targets)
    assert first.inputs.shape == (6, 1, 32, 32)
    assert first.targets.dtype == torch.int64
    assert not torch.equal(task.batch(6, 6).inputs, first.inputs)


def test_classifier_beats_the_majority_class_on_held_out_images(
    trained: tuple[ClassificationTask, FitResult],
) -> None:
    _, result = trained
    assert result.model_path is not None
    held_out = synthetic_classification(200, class_weights=WEIGHTS, seed=99)
    train_labels = synthetic_classification(TRAIN_N, class_weights=WEIGHTS, seed=TRAIN_SEED).labels
    majority = np.bincount(train_labels).argmax()
    baseline = float(np.mean(held_out.labels == majority))
    prediction = predict_classes(result.model_path, held_out.images)
    accuracy = float(np.mean(prediction.indices == held_out.labels))
    assert baseline < 0.7
    assert accuracy >= baseline + 0.25, (accuracy, baseline)
    assert result.metrics is not None
    assert result.metrics.values["accuracy"] >= baseline + 0.25


def test_model_file_round_trip_predicts_what_the_trained_network_predicts(
    trained: tuple[ClassificationTask, FitResult],
) -> None:
    task, result = trained
    assert result.model_path is not None
    loaded = load_model_file(result.model_path, kind=KIND)
    assert loaded.kind == "classification"
    assert loaded.spec["classes"] == list(task.classes)
    assert loaded.spec["input_size_vox"] == [32, 32]
    assert loaded.data_fingerprint == task.data_fingerprint
    images = synthetic_classification(20, seed=7).images
    direct = result.model.build()
    batch = torch.from_numpy(normalise_images(images, (32, 32), task.config.normalisation))
    with torch.no_grad():
        logits = direct(batch).double() / float(loaded.spec["temperature"])
        expected = torch.softmax(logits, dim=1).numpy()
    prediction = predict_classes(load_classifier(result.model_path), images)
    assert prediction.classes == task.classes
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-9)
    values = result_values(prediction, 0)
    assert set(values) == {c.name for c in result_columns(task.classes)}
    assert values["class_label"] == task.classes[int(expected[0].argmax())]


def test_a_model_file_of_another_kind_is_refused_with_one_line(tmp_path: Path) -> None:
    data = synthetic_classification(4, seed=1)
    task = ClassificationTask(ClassificationConfig(), data, data)

    path = save_model_file(
        ModelFile(
            kind="landmarks",
            network=task.network,
            spec={"landmarks": ["a"]},
            state_dict=build_network(task.network).state_dict(),
        ),
        tmp_path / "other.pt",
    )
    with pytest.raises(ModelError) as info:
        load_classifier(path)
    message = str(info.value)
    assert "landmarks model, not a classification model" in message
    assert "\n" not in message


def test_an_inconsistent_spec_is_refused(tmp_path: Path) -> None:
    data = synthetic_classification(4, seed=1)
    task = ClassificationTask(ClassificationConfig(), data, data)

    spec = task.model_spec(None)
    spec["classes"] = ["a", "b"]  # the network has three outputs
    path = save_model_file(
        ModelFile(
            kind=KIND,
            network=task.network,
            spec=spec,
            state_dict=build_network(task.network).state_dict(),
        ),
        tmp_path / "bad.pt",
    )
    with pytest.raises(ModelError, match="does not fit the 2 classes"):
        load_classifier(path)


def test_images_of_the_wrong_size_are_refused(
    trained: tuple[ClassificationTask, FitResult],
) -> None:
    _, result = trained
    assert result.model_path is not None
    with pytest.raises(InputError, match="must be 32 x 32"):
        predict_classes(result.model_path, np.zeros((2, 30, 32), np.float32))
    with pytest.raises(InputError, match="NaN"):
        predict_classes(result.model_path, np.full((32, 32), np.nan, np.float32))


def test_balanced_sampling_draws_each_class_equally_often() -> None:
    data = synthetic_classification(300, class_weights=(0.8, 0.1, 0.1), seed=5)
    uniform = ClassificationTask(ClassificationConfig(), data, data)
    balanced = ClassificationTask(ClassificationConfig(balanced_sampling=True), data, data)
    drawn_u = torch.cat([uniform.batch(i, 64).targets for i in range(20)]).numpy()
    drawn_b = torch.cat([balanced.batch(i, 64).targets for i in range(20)]).numpy()
    share_u = np.bincount(drawn_u, minlength=3) / drawn_u.size
    share_b = np.bincount(drawn_b, minlength=3) / drawn_b.size
    assert share_u[0] > 0.7
    np.testing.assert_allclose(share_b, 1 / 3, atol=0.05)


def test_synthetic_data_is_seeded_and_follows_the_class_weights() -> None:
    a = synthetic_classification(400, class_weights=(0.5, 0.3, 0.2), seed=4)
    b = synthetic_classification(400, class_weights=(0.5, 0.3, 0.2), seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_allclose(np.bincount(a.labels) / 400, (0.5, 0.3, 0.2), atol=0.07)
    assert a.classes == ("bar_0deg", "bar_60deg", "bar_120deg")


def test_config_and_factory_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        ClassificationConfig(classes=("only",))
    data = synthetic_classification(4, seed=1)
    with pytest.raises(InputError, match="differ"):
        ClassificationTask(ClassificationConfig(classes=("x", "y", "z")), data, data)
    workspace = Workspace(tmp_path)
    with pytest.raises(ConfigError, match=r"\[data\] table"):
        FACTORY.build(ClassificationConfig(), workspace=workspace, seed=0, base_dir=tmp_path)
    config = ClassificationConfig.model_validate({"data": {"train": 10, "validation": 5}})
    task = FACTORY.build(config, workspace=workspace, seed=0, base_dir=tmp_path)
    assert (task.train_size, task.val_size) == (10, 5)


def test_stopped_and_resumed_training_ends_with_the_same_weights(tmp_path: Path) -> None:
    """Batches (balanced sampling, random flips) depend on (seed, index) alone."""
    train = synthetic_classification(40, class_weights=WEIGHTS, seed=31)
    config = ClassificationConfig(balanced_sampling=True, flip_axes=(0, 1))
    engine = EngineConfig(
        iterations=8, batch_size=8, validate_every=100, checkpoint_every=4, precision="fp32"
    )
    whole = fit(
        ClassificationTask(config, train, train, seed=2),
        engine,
        run_dir=tmp_path / "a",
        model_path=None,
    )
    fit(
        ClassificationTask(config, train, train, seed=2),
        engine,
        run_dir=tmp_path / "b",
        model_path=None,
        stop_after=4,
    )
    resumed = fit(
        ClassificationTask(config, train, train, seed=2),
        engine,
        run_dir=tmp_path / "b",
        model_path=None,
    )
    assert resumed.resumed_from == 4
    for name, weights in whole.model.state_dict.items():
        torch.testing.assert_close(resumed.model.state_dict[name], weights, rtol=0, atol=0)
