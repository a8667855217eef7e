"""Kellgren-Lawrence (KL) grades of knees from a ``classification`` model trained on knee crops.

Two ways in:

- :func:`grade_knees`: standard knee ROIs from a bilateral PA film (``(N, R, R)`` at
  ``roi_spacing_mm``, centred on the knee, every knee in the right frame, i.e. a left knee
  mirrored). The model's ``crop_mm`` (the field of view of its training crops) is cut from the
  centre of each ROI and resized to the model's input. A paired (both-knees) model also sees
  the other knee of the same film.
- :func:`grade_crops`: images that are already knee crops (as in kneeKL224: one knee filling a
  square image, no pixel spacing); each is resized to the model's input, nothing is measured.

Probabilities are the model's calibrated ones (its temperature applied).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.capabilities.classification.folder_data import resize_images
from kneescope.capabilities.classification.predict import (
    Classifier,
    load_classifier,
    predict_classes,
)
from kneescope.errors import InputError, ModelError
from kneescope.models.pretrained import resolve_model
from kneescope.workspace import Workspace

DEFAULT_KL_MODEL = "kl-xray-real"
"""The shipped KL model `kneescope xray` uses when none is given."""

KL_CLASSES = ("0", "1", "2", "3", "4")


@dataclass(frozen=True)
class KlPrediction:
    """KL grades of ``N`` knees.

    Attributes:
        grades: ``(N,)`` int64, the most probable grade 0-4.
        probabilities: ``(N, 5)`` float64, calibrated probability of each grade (rows sum 1).
    """

    grades: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float64]


def load_kl_model(
    model: str | Path | None = None,
    *,
    workspace: Workspace | None = None,
    device: str = "cpu",
) -> Classifier:
    """A KL classifier: a path, a workspace model name or a shipped model's name (``None``:
    :data:`DEFAULT_KL_MODEL`).

    Raises:
        ModelError: not found, not a classification model, or not a 5-grade model.
    """
    path = resolve_model(DEFAULT_KL_MODEL if model is None else model, workspace)
    classifier = load_classifier(path, device=device)
    if classifier.spec.classes != KL_CLASSES:
        raise ModelError(
            f"{path}: its classes {list(classifier.spec.classes)} are not the KL grades 0-4; "
            "give a KL grading model"
        )
    return classifier


def crop_rois(
    rois: npt.NDArray[Any], roi_spacing_mm: float, crop_mm: float | None, size: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """``(N, rows, columns)`` float32: the central ``crop_mm`` square of each ROI (all of it
    when ``None`` or larger than the ROI), resized to ``size``."""
    stack = np.asarray(rois)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2] or stack.shape[1] < 8:
        raise InputError(f"knee ROIs must be (N, R, R) squares, found shape {stack.shape}")
    side = stack.shape[1]
    keep = side if crop_mm is None else min(side, round(crop_mm / roi_spacing_mm))
    start = (side - keep) // 2
    cropped = stack[:, start : start + keep, start : start + keep]
    return resize_images(list(cropped), size)


def grade_knees(
    model: Classifier,
    rois: npt.NDArray[Any],
    other_rois: npt.NDArray[Any] | None = None,
    *,
    roi_spacing_mm: float = 0.2,
) -> KlPrediction:
    """KL grades of standard knee ROIs (right frame), with the other knee for a paired model.

    Args:
        model: from :func:`load_kl_model`.
        rois: ``(N, R, R)`` knee ROIs at ``roi_spacing_mm``.
        other_rois: the contralateral knee's ROI for each (right frame too); ``None`` or a
            missing knee: the knee itself stands in.
        roi_spacing_mm: pixel spacing of the ROIs.
    """
    size = model.spec.image_size_vox
    images = crop_rois(rois, roi_spacing_mm, model.spec.crop_mm, size)
    pairs = None
    if other_rois is not None:
        pairs = crop_rois(other_rois, roi_spacing_mm, model.spec.crop_mm, size)
    return _result(predict_classes(model, images, pairs).probabilities)


def grade_crops(model: Classifier, images: Sequence[npt.NDArray[Any]]) -> KlPrediction:
    """KL grades of images that are knee crops already (one knee each, any size): each is
    resized to the model's input; a paired model sees each crop as its own pair."""
    if not images:
        raise InputError("no images to grade; give at least one knee crop")
    for idx, image in enumerate(images):
        if np.asarray(image).ndim != 2:
            raise InputError(f"image {idx} is not a 2D greyscale image")
    resized = resize_images([np.asarray(i) for i in images], model.spec.image_size_vox)
    return _result(predict_classes(model, resized).probabilities)


def _result(probabilities: npt.NDArray[np.float64]) -> KlPrediction:
    return KlPrediction(
        grades=np.asarray(probabilities.argmax(axis=1), dtype=np.int64),
        probabilities=probabilities,
    )
