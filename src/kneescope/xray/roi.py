"""The standard knee region of interest (ROI) cut from a knee radiograph.

A standard ROI is a square of :data:`ROI_SIZE_MM` (140 mm) sampled at :data:`ROI_PIXEL_MM`
(0.2 mm), i.e. a ``(700, 700)`` float32 array, centred on the knee centre (the centre of the
joint space at the intercondylar notch column), rows towards the feet, in the **right
frame**: a left knee's ROI is mirrored left-right, so in every ROI the lateral side is at
small column indices and the medial side at large ones (as a right knee in a PA film
displayed conventionally). Values are the film's (bone bright), resampled by bilinear
interpolation; the film's rotation is not undone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError

ROI_SIZE_MM = 140.0
"""Side of the standard knee ROI (mm)."""

ROI_PIXEL_MM = 0.2
"""Pixel size of the standard knee ROI (mm)."""

ROI_PIXELS = round(ROI_SIZE_MM / ROI_PIXEL_MM)
"""Side of the standard knee ROI in pixels (700)."""


def extract_roi(
    film: npt.NDArray[Any],
    spacing_mm: tuple[float, float],
    centre_rc: tuple[float, float],
    *,
    mirror: bool,
    size_mm: float = ROI_SIZE_MM,
    pixel_mm: float = ROI_PIXEL_MM,
    fill: float | None = None,
) -> npt.NDArray[np.float32]:
    """Cut a square ROI centred on ``centre_rc`` and resample it to ``pixel_mm``.

    Args:
        film: the film, ``array[row, col]``, any numeric dtype (bone bright).
        spacing_mm: (row, column) pixel spacing of the film (mm).
        centre_rc: (row, column) of the ROI centre in film pixels (fractional allowed).
        mirror: flip the ROI left-right (a left knee into the right frame).
        size_mm: side of the square (mm).
        pixel_mm: pixel size of the ROI (mm).
        fill: value outside the film (default: the film's 1st percentile, i.e. dark).

    Returns:
        float32 array of shape ``(n, n)``, ``n = round(size_mm / pixel_mm)``; ROI pixel
        ``(i, j)`` samples the film at row ``r0 + (i - (n-1)/2) * pixel_mm / spacing_row``
        (likewise for columns; mirrored columns when ``mirror``). Only the film pixels under
        the ROI are read.

    Raises:
        InputError: a film that is not 2D, or a non-positive spacing or size.
    """
    if film.ndim != 2:
        raise InputError(f"a knee ROI is cut from a 2D film, got shape {film.shape}")
    sr, sc = (float(s) for s in spacing_mm)
    if not (sr > 0 and sc > 0 and size_mm > 0 and pixel_mm > 0):
        raise InputError(f"spacing {spacing_mm} and ROI size {size_mm} mm must be positive")
    n = round(size_mm / pixel_mm)
    offsets = (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * pixel_mm
    rows = centre_rc[0] + offsets / sr
    cols = centre_rc[1] + offsets / sc
    if mirror:
        cols = cols[::-1]
    # read only the block of the film under the ROI (plus one pixel for interpolation)
    r_lo = max(int(np.floor(rows.min())) - 1, 0)
    r_hi = min(int(np.ceil(rows.max())) + 2, film.shape[0])
    c_lo = max(int(np.floor(min(cols[0], cols[-1]))) - 1, 0)
    c_hi = min(int(np.ceil(max(cols[0], cols[-1]))) + 2, film.shape[1])
    if fill is None:
        step = max(1, int(np.sqrt(film.size / 250_000)))
        fill = float(np.percentile(film[::step, ::step], 1.0))
    if r_lo >= r_hi or c_lo >= c_hi:
        return np.full((n, n), fill, dtype=np.float32)
    block = np.asarray(film[r_lo:r_hi, c_lo:c_hi], dtype=np.float32)
    # separable bilinear interpolation (the grid is axis-aligned): rows, then columns
    out = _interp_axis(block, rows - r_lo, axis=0, fill=fill)
    return _interp_axis(out, cols - c_lo, axis=1, fill=fill)


def _interp_axis(
    block: npt.NDArray[np.float32], at: npt.NDArray[np.float64], *, axis: int, fill: float
) -> npt.NDArray[np.float32]:
    """Linear interpolation of ``block`` at fractional indices ``at`` along ``axis``;
    ``fill`` outside."""
    size = block.shape[axis]
    i0 = np.floor(at).astype(np.int64)
    w = (at - i0).astype(np.float32)
    inside = (at >= 0) & (at <= size - 1)
    i0 = np.clip(i0, 0, size - 1)
    i1 = np.clip(i0 + 1, 0, size - 1)
    a0 = np.take(block, i0, axis=axis)
    a1 = np.take(block, i1, axis=axis)
    shape = [1, 1]
    shape[axis] = -1
    out = a0 * (1.0 - w.reshape(shape)) + a1 * w.reshape(shape)
    out = np.where(inside.reshape(shape), out, np.float32(fill))
    return np.asarray(out, dtype=np.float32)


def roi_to_film(
    roi_rc: tuple[float, float],
    spacing_mm: tuple[float, float],
    centre_rc: tuple[float, float],
    *,
    mirror: bool,
    size_mm: float = ROI_SIZE_MM,
    pixel_mm: float = ROI_PIXEL_MM,
) -> tuple[float, float]:
    """Film (row, col) of ROI pixel ``roi_rc`` of an ROI cut by :func:`extract_roi`."""
    n = round(size_mm / pixel_mm)
    half = (n - 1) / 2.0
    dj = (roi_rc[1] - half) * (-1.0 if mirror else 1.0)
    return (
        centre_rc[0] + (roi_rc[0] - half) * pixel_mm / spacing_mm[0],
        centre_rc[1] + dj * pixel_mm / spacing_mm[1],
    )
