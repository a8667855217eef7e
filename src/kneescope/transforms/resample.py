"""Resample a voxel grid to another spacing over the same field of view.

The new grid keeps the direction cosines and the outer edges of the old one: with scale
``f = new_spacing / old_spacing`` per axis, new voxel ``n`` sits at old (fractional) index
``n * f + (f - 1) / 2``. Images resample linearly in float32; label maps by nearest neighbour
only, and keep their integer dtype (never a float rescale of labels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.errors import GeometryError
from kneescope.io.guards import MAX_IMAGE_BYTES_ENV, format_bytes, max_image_bytes
from kneescope.types import Affine


@dataclass(frozen=True)
class GridChange:
    """A change of spacing between a source grid and a target grid.

    Attributes:
        source_shape: (I, J, K) of the source grid.
        target_shape: (I', J', K') of the resampled grid.
        scale: target spacing / source spacing per axis.
    """

    source_shape: tuple[int, int, int]
    target_shape: tuple[int, int, int]
    scale: tuple[float, float, float]

    @property
    def is_identity(self) -> bool:
        return self.source_shape == self.target_shape and all(
            abs(s - 1.0) < 1e-6 for s in self.scale
        )

    def target_affine(self, source_affine: Affine) -> Affine:
        """Voxel->RAS affine of the target grid."""
        m = np.eye(4)
        for axis, f in enumerate(self.scale):
            m[axis, axis] = f
            m[axis, 3] = (f - 1.0) / 2.0
        return np.asarray(source_affine, dtype=np.float64) @ m

    def image_to_target(
        self, image: npt.NDArray[Any], *, dtype: npt.DTypeLike = np.float32, chunk: int = 16
    ) -> npt.NDArray[Any]:
        """Linear resampling of an image (I, J, K) to the target grid.

        Args:
            image: source array, any numeric dtype (not copied to float).
            dtype: output dtype; integer outputs are rounded and clipped to the dtype's range.
            chunk: target slices resampled at a time (bounds the float temporaries).
        """
        out_dtype = np.dtype(dtype)
        if self.is_identity:
            return np.asarray(image, dtype=out_dtype)
        src = np.asarray(image)
        out = np.empty(self.target_shape, dtype=out_dtype)
        offset = np.array([(f - 1.0) / 2.0 for f in self.scale])
        scale = np.asarray(self.scale)
        for a in range(0, self.target_shape[0], chunk):
            b = min(a + chunk, self.target_shape[0])
            # source slices this chunk reads (linear interpolation: +-1 voxel)
            lo = max(0, int(np.floor(a * scale[0] + offset[0])) - 1)
            hi = min(src.shape[0], int(np.ceil((b - 1) * scale[0] + offset[0])) + 2)
            part = ndimage.affine_transform(
                src[lo:hi],
                scale,
                offset=offset + np.array([a * scale[0] - lo, 0.0, 0.0]),
                output_shape=(b - a, *self.target_shape[1:]),
                output=np.float32,
                order=1,
                mode="nearest",
            )
            if out_dtype.kind in "iu":
                info = np.iinfo(out_dtype)
                np.clip(np.rint(part, out=part), info.min, info.max, out=part)
            out[a:b] = part
        return out

    def labels_to_source(self, labels: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
        """Nearest-neighbour resampling of a target-grid label map back to the source grid."""
        if self.is_identity:
            return labels
        inv = [1.0 / f for f in self.scale]
        offset = [(g - 1.0) / 2.0 for g in inv]
        return ndimage.affine_transform(
            labels,
            np.asarray(inv),
            offset=offset,
            output_shape=self.source_shape,
            order=0,
            mode="nearest",
        )

    def labels_to_target(self, labels: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
        """Nearest-neighbour resampling of a source-grid label map to the target grid."""
        if self.is_identity:
            return labels
        offset = [(f - 1.0) / 2.0 for f in self.scale]
        return ndimage.affine_transform(
            labels,
            np.asarray(self.scale),
            offset=offset,
            output_shape=self.target_shape,
            order=0,
            mode="nearest",
        )


def _check_grid_size(
    shape: Sequence[int], spacing_mm: Sequence[float], target_spacing_mm: Sequence[float]
) -> None:
    """Refuse a target grid whose float32 image would exceed the decoded-image budget
    (:func:`~kneescope.io.guards.max_image_bytes`), before anything is allocated: a wrong
    spacing in a header (x100) would otherwise ask for terabytes."""
    needed = math.prod(int(n) for n in shape) * 4
    limit = max_image_bytes()
    if needed > limit:
        source = "x".join(f"{s:.4g}" for s in spacing_mm)
        target = "x".join(f"{t:.4g}" for t in target_spacing_mm)
        raise GeometryError(
            f"resampling from {source} mm to {target} mm voxels makes a "
            f"{'x'.join(str(int(n)) for n in shape)} grid of {format_bytes(needed)}, more than "
            f"the {format_bytes(limit)} allowed ({MAX_IMAGE_BYTES_ENV}); check the image's "
            "voxel spacing"
        )


def plan_resampling(
    shape: Sequence[int],
    spacing_mm: Sequence[float],
    target_spacing_mm: Sequence[float],
    *,
    tolerance: float = 0.02,
) -> GridChange:
    """The grid change from ``spacing_mm`` to ``target_spacing_mm`` (axes within tolerance stay).

    Args:
        shape: source (I, J, K).
        spacing_mm: source spacing per axis in mm.
        target_spacing_mm: wanted spacing per axis in mm.
        tolerance: relative spacing difference below which an axis is left as it is.
    """
    if len(shape) != 3 or len(spacing_mm) != 3 or len(target_spacing_mm) != 3:
        raise GeometryError("resampling needs 3 axes of shape, spacing and target spacing")
    if not all(math.isfinite(s) and s > 0 for s in (*spacing_mm, *target_spacing_mm)):
        raise GeometryError(f"spacings must be positive, got {spacing_mm} -> {target_spacing_mm}")
    new_shape: list[int] = []
    scale: list[float] = []
    for n, s, t in zip(shape, spacing_mm, target_spacing_mm, strict=True):
        if abs(t - s) <= tolerance * s:
            new_shape.append(int(n))
            scale.append(1.0)
        else:
            m = max(1, round(n * s / t))
            new_shape.append(m)
            scale.append(n / m)  # exact edge-to-edge fit of the field of view
    _check_grid_size(new_shape, spacing_mm, target_spacing_mm)
    return GridChange(
        source_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        target_shape=(new_shape[0], new_shape[1], new_shape[2]),
        scale=(scale[0], scale[1], scale[2]),
    )
