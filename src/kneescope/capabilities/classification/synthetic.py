"""Tiny synthetic classification data with exact truth (numpy only, seeded).

Each image is a noisy background with one bright bar; the class is the bar's orientation
(class ``k`` of ``n`` is tilted ``k * 180 / n`` degrees from the column axis). Position,
length, thickness, brightness and background vary at random, so the class is visible only
through the orientation. Class frequencies may be skewed (``class_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ClassificationData:
    """Images with their classes.

    Attributes:
        images: ``(N, rows, columns)`` float32 intensities.
        labels: ``(N,)`` int64 class indices in ``0 .. len(classes) - 1``.
        classes: class names, index = label.
        names: one name per image (e.g. the file name), or empty.
        pairs: ``(N,)`` int64, the index of each image's pair in the same set (e.g. the same
            patient's other knee; an image without one is its own pair), or ``None``.
    """

    images: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    classes: tuple[str, ...]
    names: tuple[str, ...] = ()
    pairs: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"images must be (N, rows, columns) with N labels, found {self.images.shape} "
                f"and {self.labels.shape}"
            )
        if self.names and len(self.names) != self.images.shape[0]:
            raise ValueError(f"{len(self.names)} names for {self.images.shape[0]} images")
        if self.pairs is not None and (
            self.pairs.shape != self.labels.shape
            or (self.pairs.size and (self.pairs.min() < 0 or self.pairs.max() >= self.pairs.size))
        ):
            raise ValueError("pairs must hold one index into the set per image")


def orientation_classes(n_classes: int) -> tuple[str, ...]:
    """Class names ``bar_0deg``, ``bar_60deg``, ... for ``n_classes`` orientations."""
    return tuple(f"bar_{round(k * 180 / n_classes)}deg" for k in range(n_classes))


def synthetic_classification(
    n: int,
    *,
    n_classes: int = 3,
    size_vox: tuple[int, int] = (32, 32),
    class_weights: tuple[float, ...] | None = None,
    noise: float = 0.3,
    seed: int = 0,
) -> ClassificationData:
    """``n`` images of one oriented bar each; the class is the orientation.

    Args:
        n: number of images.
        n_classes: number of orientations (2 .. 12).
        size_vox: image size (rows, columns), each at least 16.
        class_weights: relative class frequencies (length ``n_classes``); ``None``: equal.
        noise: standard deviation of the Gaussian noise (the bar's contrast is 0.8 to 1.2).
        seed: the same seed gives the same images.
    """
    if not 2 <= n_classes <= 12 or min(size_vox) < 16 or n < 1:
        raise ValueError("need 2..12 classes, images of at least 16 x 16 and n >= 1")
    rng = np.random.default_rng(seed)
    weights = np.ones(n_classes) if class_weights is None else np.asarray(class_weights, float)
    if weights.shape != (n_classes,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"class_weights must be {n_classes} non-negative numbers")
    labels = rng.choice(n_classes, size=n, p=weights / weights.sum()).astype(np.int64)
    rows, cols = size_vox
    r, c = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
    images = np.empty((n, rows, cols), dtype=np.float32)
    for idx, label in enumerate(labels):
        angle = np.pi * label / n_classes + rng.uniform(-0.08, 0.08)
        centre = rng.uniform(0.35, 0.65, size=2) * (rows, cols)
        half_length = rng.uniform(0.25, 0.35) * min(rows, cols)
        half_width = rng.uniform(1.0, 1.8)
        # along: distance along the bar's direction; across: distance from its axis
        dr, dc = r - centre[0], c - centre[1]
        along = dr * np.sin(angle) + dc * np.cos(angle)
        across = -dr * np.cos(angle) + dc * np.sin(angle)
        inside = np.clip(half_width + 0.5 - np.abs(across), 0.0, 1.0)
        inside *= np.clip(half_length + 0.5 - np.abs(along), 0.0, 1.0)
        background = rng.uniform(-0.2, 0.2) + rng.uniform(-0.3, 0.3) * dr / rows
        image = background + rng.uniform(0.8, 1.2) * inside + rng.normal(0.0, noise, r.shape)
        images[idx] = image.astype(np.float32)
    return ClassificationData(images=images, labels=labels, classes=orientation_classes(n_classes))
