"""Window geometry for sliding-window inference: where windows start, and how they are weighted.

Windows are axis-aligned boxes of ``roi_size_vox`` voxels. Along each axis the first window
starts at 0, the next ones ``stride = roi * (1 - overlap)`` voxels later, and the last one is
aligned with the end of the axis, so every voxel is covered. An axis shorter than the window
gets one window starting at 0 (the caller pads it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kneescope.errors import InputError

WHOLE_PLANE_VOXELS = 2**21
"""Most voxels of a whole-slice window of a 2D model (2 Mi: 8 slices of 512 x 512); its
float32 output is 4 bytes x classes x this (80 MB for 10 classes at most). Larger planes
take fewer slices per window, down to one; a plane beyond it keeps the model's window."""


def window_starts(length_vox: int, roi_vox: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis.

    Args:
        length_vox: axis length in voxels (> 0).
        roi_vox: window length in voxels (> 0).
        overlap: fraction of a window shared with its neighbour, in [0, 1).

    Returns:
        Sorted, distinct start indices; ``starts[-1] + roi_vox >= length_vox``.
    """
    if length_vox <= 0 or roi_vox <= 0:
        raise InputError(f"axis and window lengths must be positive, got {length_vox}, {roi_vox}")
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"window overlap must be in [0, 1), got {overlap}")
    if roi_vox >= length_vox:
        return [0]
    stride = max(1, math.floor(roi_vox * (1.0 - overlap)))
    count = math.ceil((length_vox - roi_vox) / stride) + 1
    starts = sorted({min(n * stride, length_vox - roi_vox) for n in range(count)})
    return starts


def check_roi(roi_size_vox: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Validate a window size: ``ndim`` positive integers."""
    roi = tuple(int(r) for r in roi_size_vox)
    if len(roi) != ndim or any(r <= 0 for r in roi):
        raise InputError(f"window size must be {ndim} positive integers, got {roi_size_vox}")
    return roi


def window_weights(
    roi_size_vox: Sequence[int],
    *,
    sigma_scale: float = 0.125,
    device: torch.device | str = "cpu",
    mode: str = "gaussian",
) -> torch.Tensor:
    """Blending weights of one window: a Gaussian centred on it, float32 of shape ``roi``
    (``mode="constant"``: all ones, MONAI's default blending).

    Weights are strictly positive (MONAI's importance map clamps its minimum), so every covered
    voxel has a positive weight sum and argmax of the weighted sum equals argmax of the mean.
    """
    from monai.data.utils import compute_importance_map

    weights = compute_importance_map(
        tuple(int(r) for r in roi_size_vox),
        mode=mode,
        sigma_scale=sigma_scale,
        device=device,
        dtype=torch.float32,
    )
    return weights.to(torch.float32)


def whole_plane_window(
    roi_size_vox: Sequence[int],
    shape_vox: Sequence[int],
    divisor: Sequence[int],
    max_voxels: int = WHOLE_PLANE_VOXELS,
) -> tuple[int, int, int] | None:
    """A 2D model's window covering whole slices of a (I, J, K) array: one window per group
    of slices, so no in-plane voxel is computed twice (a 256 x 256 window at overlap 0.25
    computes a 384 x 384 slice 1.78 times over).

    Args:
        roi_size_vox: the model's window (slices, h, w); its slice count is the most used.
        shape_vox: the array's shape (I, J, K).
        divisor: the network's in-plane size divisor (h, w); the plane is rounded up to it
            (the stitcher pads the window, and crops the padding away).
        max_voxels: most voxels in the window; slices are dropped to stay within it.

    Returns:
        ``(slices, J', K')`` with ``J' >= J``, ``K' >= K`` multiples of the divisor, or
        ``None`` when not even one whole slice fits ``max_voxels``.
    """
    plane = [-(-int(n) // int(d)) * int(d) for n, d in zip(shape_vox[1:], divisor, strict=True)]
    pixels = plane[0] * plane[1]
    if pixels > max_voxels:
        return None
    slices = max(1, min(int(roi_size_vox[0]), max_voxels // pixels, int(shape_vox[0])))
    return slices, plane[0], plane[1]
