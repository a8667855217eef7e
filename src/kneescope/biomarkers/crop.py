"""Bounding boxes with margins, and the affine of a cropped grid."""

from __future__ import annotations

import numpy as np

from kneescope.types import Affine

Box = tuple[slice, slice, slice]


def expand_box(
    box: Box, margin_mm: float, spacing_mm: tuple[float, float, float], shape: tuple[int, ...]
) -> Box:
    """``box`` grown by ``margin_mm`` on every side (in voxels of each axis), clipped to
    ``shape``."""
    out = []
    for sl, s, n in zip(box, spacing_mm, shape, strict=True):
        pad = int(np.ceil(margin_mm / s))
        out.append(slice(max(0, (sl.start or 0) - pad), min(n, (sl.stop or n) + pad)))
    return (out[0], out[1], out[2])


def union_box(a: Box, b: Box) -> Box:
    """Smallest box holding both."""
    return (
        slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)),
        slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)),
        slice(min(a[2].start, b[2].start), max(a[2].stop, b[2].stop)),
    )


def cropped_affine(affine: Affine, box: Box) -> Affine:
    """Affine of the sub-grid starting at ``box``'s first voxel."""
    out = affine.copy()
    start = np.array([sl.start or 0 for sl in box], dtype=np.float64)
    out[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return out
