"""Coarse-to-fine cascade: a low-resolution pass finds the knee, the fine pass runs inside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage


def coarse_view(image: npt.NDArray[Any], factor: int) -> npt.NDArray[Any]:
    """Block-average ``image`` (I, J, K) by ``factor`` per axis (float32, edges cropped)."""
    if factor <= 1:
        return np.asarray(image, dtype=np.float32)
    shape = [max(1, n // factor) for n in image.shape]
    cut = image[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor].astype(np.float32)
    return cut.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5))


def foreground_box(
    coarse_labels: npt.NDArray[np.integer],
    factor: int,
    fine_shape: Sequence[int],
    margin_vox: Sequence[int],
    *,
    multiple: Sequence[int] = (1, 1, 1),
) -> tuple[slice, slice, slice] | None:
    """Bounding box (fine-grid slices) of the largest foreground blob of a coarse label map.

    Args:
        coarse_labels: labels (I/f, J/f, K/f) from the low-resolution pass.
        factor: the down-sampling factor f.
        fine_shape: (I, J, K) of the fine grid.
        margin_vox: margin added on every side, in fine voxels per axis.
        multiple: box sizes are grown (within the volume) to multiples of these.

    Returns:
        The box, or ``None`` when the coarse pass found no foreground.
    """
    mask = coarse_labels > 0
    if not mask.any():
        return None
    components, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(components.reshape(-1))
        sizes[0] = 0
        mask = components == int(np.argmax(sizes))
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    slices: list[slice] = []
    for axis, s in enumerate(box):
        n = int(fine_shape[axis])
        lo = max(0, s.start * factor - int(margin_vox[axis]))
        hi = min(n, s.stop * factor + int(margin_vox[axis]))
        m = max(1, int(multiple[axis]))
        want = min(n, math.ceil((hi - lo) / m) * m)
        grow = want - (hi - lo)
        lo = max(0, lo - grow // 2)
        hi = min(n, lo + want)
        lo = max(0, hi - want)
        slices.append(slice(lo, hi))
    return (slices[0], slices[1], slices[2])
