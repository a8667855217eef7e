"""Affine geometry in kneescope's one convention: RAS+ millimetres.

A voxel index ``(i, j, k)`` (array axis order, 0-based, voxel centres) maps to a point in
patient space by ``affine_ras @ (i, j, k, 1)``.

RAS+ (as NIfTI and nibabel): +x points to the patient's Right, +y Anterior, +z Superior.
DICOM and ITK use LPS+ (+x Left, +y Posterior, +z Superior); the two differ by a sign flip of
the first two world axes, ``diag(-1, -1, 1, 1)``, which :func:`lps_to_ras` and
:func:`ras_to_lps` apply.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kneescope.errors import GeometryError
from kneescope.types import Affine

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(affine_lps: npt.ArrayLike) -> Affine:
    """Convert a 4x4 voxel->LPS affine (DICOM/ITK) to voxel->RAS (NIfTI)."""
    return _LPS_RAS @ _as_affine(affine_lps)


def ras_to_lps(affine_ras: npt.ArrayLike) -> Affine:
    """Convert a 4x4 voxel->RAS affine to voxel->LPS; inverse of :func:`lps_to_ras`."""
    return _LPS_RAS @ _as_affine(affine_ras)


def _as_affine(matrix: npt.ArrayLike) -> Affine:
    a = np.asarray(matrix, dtype=np.float64)
    if a.shape != (4, 4):
        raise GeometryError(f"expected a 4x4 affine, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise GeometryError("affine holds NaN or infinite values")
    return a


def validate_affine(matrix: npt.ArrayLike) -> Affine:
    """Return ``matrix`` as a float64 4x4 affine, or raise if it is not a usable one.

    Usable: finite, bottom row ``(0, 0, 0, 1)``, non-singular 3x3 part.
    """
    a = _as_affine(matrix)
    if not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0]):
        raise GeometryError(f"affine bottom row must be (0, 0, 0, 1), got {a[3].tolist()}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise GeometryError("affine is singular: two image axes point the same way")
    return a


def spacing_from_affine(affine: npt.ArrayLike) -> tuple[float, float, float]:
    """Voxel spacing in mm along array axes i, j, k: the column norms of the 3x3 part."""
    a = _as_affine(affine)
    norms = np.linalg.norm(a[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def direction_from_affine(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """3x3 matrix whose columns are the unit world directions of array axes i, j, k."""
    a = _as_affine(affine)
    return a[:3, :3] / np.linalg.norm(a[:3, :3], axis=0)


def affine_from_axes(
    origin: npt.ArrayLike, direction: npt.ArrayLike, spacing_mm: npt.ArrayLike
) -> Affine:
    """Build a 4x4 affine from the world position of voxel (0,0,0), a 3x3 direction matrix
    (columns = unit vectors of array axes i, j, k) and the spacing in mm per axis."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    s = np.asarray(spacing_mm, dtype=np.float64).reshape(3)
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise GeometryError(f"spacing must be positive and finite, got {s.tolist()} mm")
    a = np.eye(4)
    a[:3, :3] = d * s[None, :]
    a[:3, 3] = np.asarray(origin, dtype=np.float64).reshape(3)
    return validate_affine(a)


_RAS_CODES = ("RL", "AP", "SI")


def orientation_code(affine_ras: npt.ArrayLike) -> str:
    """Three-letter code of the world direction each array axis points to, e.g. ``"RAS"``.

    Letters follow nibabel's ``aff2axcodes`` convention for RAS affines: the letter names the
    direction of *increasing* index. For an oblique affine each axis takes its nearest world
    axis.
    """
    d = direction_from_affine(affine_ras)
    letters = []
    used: set[int] = set()
    for col in range(3):
        order = np.argsort(-np.abs(d[:, col]))
        world = next(int(w) for w in order if int(w) not in used)
        used.add(world)
        positive, negative = _RAS_CODES[world][0], _RAS_CODES[world][1]
        letters.append(positive if d[world, col] > 0 else negative)
    return "".join(letters)


def flip_lr_affine(affine_ras: npt.ArrayLike) -> Affine:
    """Mirror an affine through the patient's mid-sagittal plane (x -> -x in RAS)."""
    return np.diag([-1.0, 1.0, 1.0, 1.0]) @ _as_affine(affine_ras)


def voxel_to_world(affine: npt.ArrayLike, ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Map voxel indices of shape (..., 3) to world mm of shape (..., 3)."""
    a = _as_affine(affine)
    p = np.asarray(ijk, dtype=np.float64)
    return p @ a[:3, :3].T + a[:3, 3]


def world_to_voxel(affine: npt.ArrayLike, xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Map world points of shape (..., 3) in mm to (fractional) voxel indices (..., 3)."""
    a = validate_affine(affine)
    inv = np.linalg.inv(a)
    p = np.asarray(xyz, dtype=np.float64)
    return p @ inv[:3, :3].T + inv[:3, 3]
