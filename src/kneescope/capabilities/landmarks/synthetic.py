"""Tiny synthetic landmark data with exact truth (numpy only, seeded).

Each image holds up to three distinct features on a noisy, sloping background, each marking
one landmark at a random sub-pixel position:

- ``blob``: the centre of a bright Gaussian spot;
- ``ring``: the centre of a bright ring (its centre is dark);
- ``corner``: the top-left corner of a bright square.

Positions are in mm from the centre of pixel (0, 0): ``(row * spacing_row, column *
spacing_column)``. Landmarks keep at least 9 pixels apart and 7 pixels from the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SYNTHETIC_LANDMARKS = ("blob", "ring", "corner")
"""The features the generator draws, in this order."""


@dataclass(frozen=True)
class LandmarkData:
    """Images with their landmark positions.

    Attributes:
        images: ``(N, rows, columns)`` float32 intensities.
        positions_mm: ``(N, landmarks, 2)`` float64 (row, column) positions in mm from the
            centre of pixel (0, 0).
        landmarks: landmark names, in the order of ``positions_mm``'s second axis.
        spacing_mm: pixel spacing (rows, columns), mm.
    """

    images: npt.NDArray[np.float32]
    positions_mm: npt.NDArray[np.float64]
    landmarks: tuple[str, ...]
    spacing_mm: tuple[float, float]

    def __post_init__(self) -> None:
        n = self.images.shape[0] if self.images.ndim == 3 else -1
        if self.positions_mm.shape != (n, len(self.landmarks), 2):
            raise ValueError(
                f"images must be (N, rows, columns) and positions (N, {len(self.landmarks)}, 2), "
                f"found {self.images.shape} and {self.positions_mm.shape}"
            )


def _draw_positions(
    rng: np.random.Generator, shape: tuple[int, int], count: int
) -> npt.NDArray[np.float64]:
    margin, gap = 7.0, 9.0
    high = np.array(shape, dtype=float) - 1 - margin
    while True:
        points = rng.uniform(margin, high, size=(count, 2))
        far = all(
            np.hypot(*(points[a] - points[b])) >= gap
            for a in range(count)
            for b in range(a + 1, count)
        )
        if far:
            return points


def _feature(
    name: str, r: npt.NDArray[np.float64], c: npt.NDArray[np.float64], point: npt.NDArray[Any]
) -> npt.NDArray[np.float64]:
    dr, dc = r - point[0], c - point[1]
    if name == "blob":
        return np.exp(-(dr**2 + dc**2) / (2 * 1.5**2))
    if name == "ring":
        return np.exp(-((np.hypot(dr, dc) - 3.5) ** 2) / (2 * 0.7**2))
    side = 6.0  # corner: the square spans [point, point + side) on both axes
    rows = np.clip(dr + 0.5, 0.0, 1.0) * np.clip(side - dr + 0.5, 0.0, 1.0)
    return rows * np.clip(dc + 0.5, 0.0, 1.0) * np.clip(side - dc + 0.5, 0.0, 1.0)


def synthetic_landmarks(
    n: int,
    *,
    landmarks: tuple[str, ...] = SYNTHETIC_LANDMARKS,
    size_vox: tuple[int, int] = (48, 48),
    spacing_mm: tuple[float, float] = (0.8, 0.6),
    noise: float = 0.15,
    seed: int = 0,
) -> LandmarkData:
    """``n`` images with the features ``landmarks`` (a subset of :data:`SYNTHETIC_LANDMARKS`).

    Args:
        n: number of images.
        landmarks: which features to draw (1 to 3 of ``blob``, ``ring``, ``corner``).
        size_vox: image size (rows, columns), each at least 32.
        spacing_mm: pixel spacing (rows, columns), mm.
        noise: standard deviation of the Gaussian noise (features have contrast 0.8 to 1.2).
        seed: the same seed gives the same images.
    """
    if not landmarks or len(set(landmarks)) != len(landmarks):
        raise ValueError(f"landmarks must be distinct names, found {landmarks}")
    unknown = set(landmarks) - set(SYNTHETIC_LANDMARKS)
    if unknown or min(size_vox) < 32 or n < 1:
        raise ValueError(
            f"landmarks must come from {SYNTHETIC_LANDMARKS}, images be at least 32 x 32, n >= 1"
        )
    rng = np.random.default_rng(seed)
    rows, cols = size_vox
    r, c = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
    images = np.empty((n, rows, cols), dtype=np.float32)
    positions_vox = np.empty((n, len(landmarks), 2), dtype=np.float64)
    for idx in range(n):
        points = _draw_positions(rng, size_vox, len(landmarks))
        image = rng.uniform(-0.2, 0.2) + rng.uniform(-0.3, 0.3) * (r / rows - 0.5)
        for name, point in zip(landmarks, points, strict=True):
            image = image + rng.uniform(0.8, 1.2) * _feature(name, r, c, point)
        images[idx] = (image + rng.normal(0.0, noise, r.shape)).astype(np.float32)
        positions_vox[idx] = points
    positions_mm = positions_vox * np.asarray(spacing_mm, dtype=np.float64)
    return LandmarkData(
        images=images,
        positions_mm=positions_mm,
        landmarks=tuple(landmarks),
        spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1])),
    )
