"""Reorient a voxel array to a named axis code by axis permutation and flips (no resampling).

Oblique volumes keep their obliqueness: each array axis goes to its nearest world axis, and
:class:`Reorientation` records how to undo the change exactly, so a label map computed on the
reoriented grid maps back onto the input grid voxel for voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core.geometry import orientation_code
from kneescope.errors import GeometryError
from kneescope.types import Affine


@dataclass(frozen=True)
class Reorientation:
    """How an array of ``source_shape`` was permuted and flipped.

    Attributes:
        permutation: new axis p takes source axis ``permutation[p]``.
        flips: new axes (after permutation) that were reversed.
        source_shape: shape of the source array (3D).
    """

    permutation: tuple[int, int, int]
    flips: tuple[int, ...]
    source_shape: tuple[int, int, int]

    def apply(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Reorient a source-grid array (3D, or 4D with trailing channels); returns a view."""
        perm = (*self.permutation, *range(3, array.ndim))
        out = np.transpose(array, perm)
        return np.flip(out, self.flips) if self.flips else out

    def undo(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Map a reoriented-grid array back onto the source grid; returns a view."""
        out = np.flip(array, self.flips) if self.flips else array
        inverse = tuple(int(i) for i in np.argsort(self.permutation))
        return np.transpose(out, (*inverse, *range(3, array.ndim)))

    def affine(self, source_affine: Affine) -> Affine:
        """The voxel->RAS affine of the reoriented grid."""
        new_to_old = np.zeros((4, 4))
        new_to_old[3, 3] = 1.0
        new_shape = [self.source_shape[q] for q in self.permutation]
        for p, q in enumerate(self.permutation):
            if p in self.flips:
                new_to_old[q, p] = -1.0
                new_to_old[q, 3] = new_shape[p] - 1
            else:
                new_to_old[q, p] = 1.0
        return np.asarray(source_affine, dtype=np.float64) @ new_to_old


def plan_reorientation(
    affine_ras: Affine, shape: tuple[int, ...], target_code: str
) -> Reorientation:
    """The permutation and flips that bring an array with ``affine_ras`` to ``target_code``.

    Args:
        affine_ras: 4x4 voxel->RAS affine of the source.
        shape: source array shape (I, J, K).
        target_code: three letters, one of R/L, A/P, S/I each, e.g. ``"RAS"`` or ``"LPS"``.
    """
    code = target_code.upper()
    if len(code) != 3 or {_axis_of(c) for c in code} != {0, 1, 2}:
        raise GeometryError(f"orientation code must name three different axes, got {target_code!r}")
    if len(shape) != 3:
        raise GeometryError(f"reorientation needs a 3D array, got shape {shape}")
    source = orientation_code(affine_ras)
    permutation: list[int] = []
    flips: list[int] = []
    for p, letter in enumerate(code):
        q = next(i for i, s in enumerate(source) if _axis_of(s) == _axis_of(letter))
        permutation.append(q)
        if source[q] != letter:
            flips.append(p)
    perm = (permutation[0], permutation[1], permutation[2])
    src = (int(shape[0]), int(shape[1]), int(shape[2]))
    return Reorientation(permutation=perm, flips=tuple(flips), source_shape=src)


def left_right_axis(code: str) -> int | None:
    """The array axis that runs left-right in axis code ``code`` (e.g. 0 for ``"RIA"``)."""
    return next((i for i, c in enumerate(code.upper()) if c in "RL"), None)


def mirror_to_right(array: npt.NDArray[Any], code: str, side: str | None) -> npt.NDArray[Any]:
    """Mirror a left knee along the left-right axis so it shows right-knee anatomy.

    ``array`` is on a grid with axis code ``code`` (3D, or 4D with trailing channels); right
    knees (and arrays with no left-right axis) come back unchanged. The mirror is its own
    inverse, so the same call maps a result on the mirrored grid back. Returns a view.
    """
    axis = left_right_axis(code)
    if side != "left" or axis is None:
        return array
    return np.flip(array, axis)


def medial_is_low(code: str) -> bool:
    """Whether, on a right knee in axis code ``code``, medial lies at low indices of the
    left-right axis (medial on a right knee points to the patient's left, the midline)."""
    axis = left_right_axis(code)
    if axis is None:
        raise GeometryError(f"axis code {code!r} has no left-right axis")
    return code.upper()[axis] == "R"


def _axis_of(letter: str) -> int:
    for axis, pair in enumerate(("RL", "AP", "SI")):
        if letter in pair:
            return axis
    raise GeometryError(f"unknown orientation letter {letter!r}; use R, L, A, P, S or I")


__all__ = [
    "Reorientation",
    "left_right_axis",
    "medial_is_low",
    "mirror_to_right",
    "plan_reorientation",
]
