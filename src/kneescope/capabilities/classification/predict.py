"""Classify images with a ``classification`` model file: class probabilities per image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from kneescope.capabilities.classification.spec import KIND, ClassificationSpec
from kneescope.errors import InputError, ModelError
from kneescope.models.model_file import ModelFile, load_model_file, validate_description
from kneescope.transforms.image_batch import normalise_images

CHUNK = 64
"""Images per forward pass."""


@dataclass(frozen=True)
class Classifier:
    """A loaded classifier: its spec and its network (eval mode, on ``device``)."""

    spec: ClassificationSpec
    network: torch.nn.Module
    model_file: ModelFile
    device: torch.device


@dataclass(frozen=True)
class ClassPrediction:
    """Class probabilities of ``N`` images.

    Attributes:
        classes: class names, in the order of ``probabilities``' columns.
        probabilities: ``(N, classes)`` float64, each row summing to 1.
    """

    classes: tuple[str, ...]
    probabilities: npt.NDArray[np.float64]

    @property
    def indices(self) -> npt.NDArray[np.int64]:
        """``(N,)`` the most probable class index per image."""
        return np.asarray(self.probabilities.argmax(axis=1), dtype=np.int64)

    @property
    def labels(self) -> list[str]:
        """The most probable class name per image."""
        return [self.classes[int(k)] for k in self.indices]


def _spec(model: ModelFile, path: Path) -> ClassificationSpec:
    raw = {k: v for k, v in model.spec.items() if k != "training"}
    spec = validate_description(
        ClassificationSpec,
        raw,
        path,
        what="classification",
        default_where="spec",
        hint="; retrain the model",
    )
    net = model.network
    fixed = net.input_shape_vox if net.name == "vgg_classifier" else spec.input_size_vox
    if net.out_channels != len(spec.classes) or fixed != spec.input_size_vox:
        raise ModelError(
            f"{path}: the network ({net.out_channels} outputs, input {net.input_shape_vox}) does "
            f"not fit the {len(spec.classes)} classes and input {spec.input_size_vox}; the file "
            "is corrupt: retrain the model"
        )
    return spec


def load_classifier(path: Path, *, device: torch.device | str = "cpu") -> Classifier:
    """Load a ``classification`` model file.

    Raises:
        ModelError: missing, corrupt, of another kind, or inconsistent.
    """
    model = load_model_file(path, kind=KIND)
    spec = _spec(model, path)
    dev = torch.device(device)
    return Classifier(spec=spec, network=model.build(dev), model_file=model, device=dev)


def predict_logits(
    model: Classifier | Path,
    images: npt.NDArray[Any],
    pairs: npt.NDArray[Any] | None = None,
) -> npt.NDArray[np.float64]:
    """``(N, classes)`` raw network outputs (before the temperature) of ``images``.

    Args:
        model: a loaded classifier or the path of a ``classification`` model file.
        images: ``(N, rows, columns)`` or one ``(rows, columns)`` image, at the model's input
            size (``spec.input_size_vox``), any real dtype; each is normalised by its own
            statistics as in training.
        pairs: for a paired network, each image's pair (e.g. the other knee, mirrored to the
            same side), same shape as ``images``; ``None``: each image is its own pair.
            Ignored by a single-image network.

    Raises:
        InputError: images of the wrong size or with non-finite values.
        ModelError: the model file cannot be used.
    """
    classifier = model if isinstance(model, Classifier) else load_classifier(model)
    spec = classifier.spec
    batch = torch.from_numpy(normalise_images(images, spec.image_size_vox, spec.normalisation))
    if classifier.model_file.network.paired:
        other = batch
        if pairs is not None:
            other = torch.from_numpy(
                normalise_images(pairs, spec.image_size_vox, spec.normalisation)
            )
            if other.shape != batch.shape:
                raise InputError(
                    f"{batch.shape[0]} images but {other.shape[0]} pairs; give one pair per image"
                )
        batch = torch.cat([batch, other], dim=1)
    out = []
    with torch.no_grad():
        for start in range(0, batch.shape[0], CHUNK):
            logits = classifier.network(batch[start : start + CHUNK].to(classifier.device))
            out.append(logits.double().cpu())
    return np.asarray(torch.cat(out).numpy(), dtype=np.float64)


def predict_classes(
    model: Classifier | Path,
    images: npt.NDArray[Any],
    pairs: npt.NDArray[Any] | None = None,
) -> ClassPrediction:
    """Class probabilities of ``images``: softmax of the logits divided by the model's
    temperature (``spec.temperature``, 1 when the model was not calibrated).

    Arguments as :func:`predict_logits`.
    """
    classifier = model if isinstance(model, Classifier) else load_classifier(model)
    logits = torch.from_numpy(predict_logits(classifier, images, pairs))
    out = [torch.softmax(logits / classifier.spec.temperature, dim=1)]
    probabilities = torch.cat(out).numpy()
    return ClassPrediction(classes=classifier.spec.classes, probabilities=probabilities)
