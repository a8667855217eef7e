"""The classification training task: images and their classes, cross-entropy, accuracy.

Train it with the engine (:func:`kneescope.training.engine.fit`); the model file it writes
is of kind ``classification`` (:mod:`kneescope.capabilities.classification.spec`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from kneescope.capabilities.classification.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from kneescope.capabilities.classification.config import (
    ClassificationConfig,
    FolderClassificationSource,
    SyntheticClassificationSource,
)
from kneescope.capabilities.classification.folder_data import load_class_folder
from kneescope.capabilities.classification.grade_metrics import grade_metrics, ordinal_targets
from kneescope.capabilities.classification.sampling import batch_indices
from kneescope.capabilities.classification.spec import KIND, ClassificationSpec
from kneescope.capabilities.classification.synthetic import (
    ClassificationData,
    synthetic_classification,
)
from kneescope.errors import ConfigError, InputError, ModelError
from kneescope.models import NetworkConfig
from kneescope.models.model_file import load_model_file
from kneescope.training.task import Metrics, TaskBatch
from kneescope.transforms.augment2d import random_affine_2d, random_contrast
from kneescope.transforms.image_batch import normalise_images
from kneescope.workspace import Workspace

EVAL_CHUNK = 64
"""Images per forward pass during evaluation."""


def _check_data(data: ClassificationData, classes: tuple[str, ...], what: str) -> None:
    if len(data.labels) == 0:
        raise InputError(f"the {what} set is empty; give at least one image")
    if tuple(data.classes) != classes:
        raise InputError(f"the {what} set's classes {data.classes} differ from {classes}")
    if data.labels.min() < 0 or data.labels.max() >= len(classes):
        raise InputError(f"the {what} set has labels outside 0..{len(classes) - 1}")


def arrays_fingerprint(
    sets: Sequence[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], Any]],
) -> str:
    """16-hex-digit SHA-256 of ``(images, labels, classes)`` sets (2D images or volumes)."""
    digest = hashlib.sha256()
    for images, labels, classes in sets:
        digest.update(repr((images.shape, classes)).encode())
        digest.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def data_fingerprint(*sets: ClassificationData) -> str:
    """16-hex-digit SHA-256 of the images, labels and class names of ``sets``."""
    return arrays_fingerprint([(d.images, d.labels, d.classes) for d in sets])


class ClassificationTask:
    """Image classification as a :class:`~kneescope.training.task.TrainingTask`.

    Batches: inputs ``(B, 1, rows, columns)`` float32 (each image normalised by its own
    statistics), targets ``(B,)`` int64 class indices. Network outputs ``(B, classes)`` logits.
    Validation metrics: ``accuracy`` (the score), ``balanced_accuracy``, ``recall`` per class,
    ``confusion`` (rows: truth, columns: prediction) and ``loss``.

    Args:
        config: the task settings (its ``classes``, when given, must be the data's).
        train: training images and classes.
        validation: held-out images and classes.
        seed: seeds batch sampling and augmentation.

    Raises:
        InputError: empty sets, or classes that differ between the sets and the config.
        ConfigError: a network that does not fit the classes.
    """

    kind: str = KIND

    def __init__(
        self,
        config: ClassificationConfig,
        train: ClassificationData,
        validation: ClassificationData,
        *,
        seed: int = 0,
        init_path: Path | None = None,
    ) -> None:
        self.classes: tuple[str, ...] = tuple(config.classes) or tuple(train.classes)
        _check_data(train, self.classes, "training")
        _check_data(validation, self.classes, "validation")
        self.config = config
        self.seed = seed
        try:
            self.network: NetworkConfig = config.network_config(len(self.classes))
        except ValueError as exc:
            raise ConfigError(f"{exc}; fix the network or the classes") from None
        self.data_fingerprint = data_fingerprint(train, validation)
        self.train_size = len(train.labels)
        self.val_size = len(validation.labels)
        size = config.input_size_vox
        self._train_x = torch.from_numpy(normalise_images(train.images, size, config.normalisation))
        self._train_y = torch.from_numpy(np.asarray(train.labels, dtype=np.int64))
        self._val_x = torch.from_numpy(
            normalise_images(validation.images, size, config.normalisation)
        )
        self._val_y = torch.from_numpy(np.asarray(validation.labels, dtype=np.int64))
        self._by_class = [np.flatnonzero(train.labels == k) for k in range(len(self.classes))]
        self.paired = self.network.paired
        self.init_path = init_path
        self._train_pairs = _pairs_of(train)
        self._val_pairs = _pairs_of(validation)
        self._soft_targets = (
            torch.from_numpy(ordinal_targets(len(self.classes), config.ordinal_sigma))
            if config.loss == "ordinal"
            else None
        )

    def _inputs(
        self, images: torch.Tensor, pairs: np.ndarray[Any, Any], picks: Any
    ) -> torch.Tensor:
        """``(B, 1, H, W)`` images, or ``(B, 2, H, W)`` image + pair for a paired network."""
        index = torch.as_tensor(picks)
        if not self.paired:
            return images[index].clone()
        partner = torch.from_numpy(pairs[np.asarray(picks)])
        return torch.cat([images[index], images[partner]], dim=1)

    def _indices(self, rng: np.random.Generator, size: int) -> np.ndarray[Any, Any]:
        balanced = self.config.balanced_sampling
        return batch_indices(rng, size, self.train_size, self._by_class, balanced)

    def batch(self, index: int, size: int) -> TaskBatch:
        """Global batch ``index``: ``size`` training images drawn with a seeded generator."""
        rng = np.random.default_rng((self.seed % 2**32, index))
        picks = self._indices(rng, size)
        inputs = self._inputs(self._train_x, self._train_pairs, picks)
        for axis in self.config.flip_axes:
            flip = torch.from_numpy(rng.random(inputs.shape[:2]) < 0.5)
            inputs[flip] = inputs[flip].flip(1 + axis)
        aug = self.config.augment
        if aug is not None:
            inputs = random_affine_2d(
                inputs,
                rng,
                rotation_deg=aug.rotation_deg,
                scale=aug.scale,
                translate=aug.translate,
            )
            inputs = random_contrast(inputs, rng, amount=aug.intensity)
        return TaskBatch(inputs=inputs, targets=self._train_y[torch.from_numpy(picks)])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (against ordinal soft targets for ``loss = "ordinal"``), the batch mean."""
        if self._soft_targets is None:
            return torch.nn.functional.cross_entropy(outputs.float(), targets)
        soft = self._soft_targets.to(outputs.device)[targets]
        return torch.nn.functional.cross_entropy(outputs.float(), soft)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        """Accuracy and friends on the validation images."""
        was_training = network.training
        network.eval()
        logits = []
        with torch.no_grad():
            for start in range(0, len(self._val_y), EVAL_CHUNK):
                picks = np.arange(start, min(start + EVAL_CHUNK, len(self._val_y)))
                chunk = self._inputs(self._val_x, self._val_pairs, picks).to(device)
                logits.append(network(chunk).float().cpu())
        network.train(was_training)
        return calibrated_metrics(torch.cat(logits), self._val_y, len(self.classes))

    def initialise(self, network: torch.nn.Module) -> None:
        """Start from ``init_path``'s weights (the config's ``init_weights``), if given.

        Raises:
            ModelError: the file is missing, of another kind, or its network does not fit.
        """
        if self.init_path is None:
            return
        start = load_model_file(self.init_path, kind=KIND)
        state = dict(start.state_dict)
        if self.network.paired and not start.network.paired:
            head = state.get("head.weight")
            if head is not None:
                state["head.weight"] = torch.cat([head, torch.zeros_like(head)], dim=1)
        same = start.network.model_copy(update={"paired": self.network.paired})
        if same != self.network:
            raise ModelError(
                f"{self.init_path}: its network ({start.network.name}, features "
                f"{start.network.features}) is not the one being trained; start from a model "
                "of the same network"
            )
        network.load_state_dict(state)

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        """The ``classification`` spec: classes, input size, normalisation.

        Its ``training`` key (the task config) goes to the model file's training record.
        """
        spec = ClassificationSpec(
            classes=self.classes,
            input_size_vox=self.config.input_size_vox,
            normalisation=self.config.normalisation,
            crop_mm=self.config.crop_mm,
            temperature=_temperature(metrics),
        )
        training = {"task_config": self.config.model_dump(mode="json")}
        return {**spec.model_dump(mode="json"), "training": training}


def synthetic_sets(
    source: SyntheticClassificationSource, size_vox: tuple[int, int], seed: int
) -> tuple[ClassificationData, ClassificationData]:
    """Training and validation sets generated from ``source`` with seeds drawn from ``seed``."""
    train_seed, val_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))

    def generate(n: int, data_seed: int) -> ClassificationData:
        return synthetic_classification(
            n,
            n_classes=source.n_classes,
            size_vox=size_vox,
            class_weights=source.class_weights,
            noise=source.noise,
            seed=data_seed,
        )

    try:
        return generate(source.train, train_seed), generate(source.validation, val_seed)
    except ValueError as exc:
        raise ConfigError(f"synthetic data: {exc}; fix the [data] table") from None


class ClassificationTaskFactory:
    """The ``classification`` entry of the ``kneescope.tasks`` group (training files)."""

    config_type: type[BaseModel] = ClassificationConfig

    def build(
        self, config: Any, *, workspace: Workspace, seed: int, base_dir: Path
    ) -> ClassificationTask:
        """The task for a training file's task keys (``config``: a ClassificationConfig).

        Raises:
            ConfigError: no ``[data]`` table, or data that contradicts the config.
        """
        del workspace
        if not isinstance(config, ClassificationConfig):
            raise TypeError(f"expected a ClassificationConfig, got {type(config).__name__}")
        if config.data is None:
            raise ConfigError(
                "a classification training file needs a [data] table; "
                'add e.g. [data] source = "synthetic" train = 300'
            )
        if isinstance(config.data, FolderClassificationSource):
            size = config.input_size_vox
            train = load_class_folder(base_dir / config.data.train, config.classes, size)
            validation = load_class_folder(
                base_dir / config.data.validation, config.classes or train.classes, size
            )
        else:
            train, validation = synthetic_sets(config.data, config.input_size_vox, seed)
        init = None if config.init_weights is None else base_dir / config.init_weights
        return ClassificationTask(config, train, validation, seed=seed, init_path=init)


FACTORY = ClassificationTaskFactory()
"""The object the ``kneescope.tasks`` entry point ``classification`` names."""


def _temperature(metrics: Metrics | None) -> float:
    if metrics is None:
        return 1.0
    value = metrics.values.get("temperature")
    return float(value) if isinstance(value, int | float) else 1.0


def calibrated_metrics(logits: torch.Tensor, truth: torch.Tensor, n_classes: int) -> Metrics:
    """:func:`classification_metrics` plus calibration on the same validation set:
    ``temperature`` (fitted by NLL; the model file keeps it), ``ece_uncalibrated`` and
    ``ece`` (expected calibration error, 15 bins, before and after the temperature)."""
    metrics = classification_metrics(logits, truth, n_classes)
    raw = logits.double().numpy()
    labels = truth.numpy()
    temperature = fit_temperature(raw, labels)
    extra = {
        "temperature": temperature,
        "ece_uncalibrated": expected_calibration_error(softmax(raw), labels),
        "ece": expected_calibration_error(apply_temperature(raw, temperature), labels),
    }
    return Metrics(score=metrics.score, values={**metrics.values, **extra})


def _pairs_of(data: ClassificationData) -> np.ndarray[Any, Any]:
    if data.pairs is None:
        return np.arange(len(data.labels), dtype=np.int64)
    return np.asarray(data.pairs, dtype=np.int64)


def classification_metrics(logits: torch.Tensor, truth: torch.Tensor, n_classes: int) -> Metrics:
    """Metrics of ``(N, classes)`` logits against ``(N,)`` true class indices.

    ``recall`` is None for a class absent from ``truth`` (and left out of the balanced
    accuracy). With three or more classes, taken as ordered grades (e.g. KL 0-4), also
    ``quadratic_kappa``, ``mean_abs_error`` (grades) and ``auc_at_least_2`` (the probability of
    a class index >= 2 against the truth ``>= 2``; None when only one side is present).
    """
    predicted = logits.argmax(dim=1)
    confusion = torch.zeros((n_classes, n_classes), dtype=torch.int64)
    confusion.index_put_((truth, predicted), torch.ones_like(truth), accumulate=True)
    per_class = confusion.sum(dim=1)
    recall: list[float | None] = [
        float(confusion[k, k] / per_class[k]) if per_class[k] > 0 else None
        for k in range(n_classes)
    ]
    present = [r for r in recall if r is not None]
    accuracy = float((predicted == truth).double().mean())
    loss = float(torch.nn.functional.cross_entropy(logits, truth))
    return Metrics(
        score=accuracy,
        values={
            "accuracy": accuracy,
            "balanced_accuracy": float(np.mean(present)),
            "recall": recall,
            "confusion": confusion.tolist(),
            "loss": loss,
            **(grade_metrics(logits, truth) if n_classes >= 3 else {}),
        },
    )
