"""Analytic cartilage-like shapes with exactly known thickness, for validating thickness.

Each phantom is a bone region covered by a layer of known thickness: a flat slab on a
half-space, a cylindrical shell on a solid cylinder, a spherical shell on a ball (constant
thickness), or a wedge (a flat layer on a half-space whose thickness grows linearly across
the plane, like a plate's tapered margin), in any rigid orientation and sub-voxel position.
Voxelisation is the *exact inside test at voxel centres* (a voxel is cartilage when its
centre lies inside the layer), which is what a perfect segmentation of an infinitely sharp
image gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError
from kneescope.types import Affine

ShapeKind = Literal["slab", "cylinder", "sphere", "wedge"]
WEDGE_SLOPE = 0.3
"""Thickness change (mm) per mm across the wedge (17 deg between its surfaces)."""
DESS_SPACING_MM = (0.7, 0.3646, 0.3646)


@dataclass(frozen=True)
class AnalyticPlate:
    """A voxelised layer of known thickness on a bone.

    Attributes:
        cartilage: bool (I, J, K) layer voxels.
        bone: bool (I, J, K) bone voxels.
        affine: 4x4 voxel -> RAS+ mm (axis-aligned; the shape carries the rotation).
        thickness_mm: true thickness on the interface (the wedge: at its centre line).
        margin_mm: evaluate only interface points at least this far inside the grid box.
        rotation: 3x3 rotation of the shape; centre_mm: (3,) its centre (world mm).
        slope: thickness change per mm along the shape's first axis (wedge; else 0).
    """

    cartilage: npt.NDArray[np.bool_]
    bone: npt.NDArray[np.bool_]
    affine: Affine
    thickness_mm: float
    margin_mm: float
    rotation: npt.NDArray[np.float64]
    centre_mm: npt.NDArray[np.float64]
    slope: float = 0.0

    def true_thickness_mm(self, points_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Exact thickness along the bone normal (mm, (N,)) at bone-surface points (N, 3)."""
        u0 = (points_mm - self.centre_mm) @ self.rotation[:, 0]
        out: npt.NDArray[np.float64] = self.thickness_mm + self.slope * u0
        return out

    def interior(self, points_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """True for world points (N, 3) at least ``margin_mm`` inside the grid box."""
        spacing = np.diag(self.affine)[:3]
        lo = self.affine[:3, 3] + self.margin_mm
        hi = self.affine[:3, 3] + (np.array(self.cartilage.shape) - 1) * spacing - self.margin_mm
        return np.all((points_mm >= lo) & (points_mm <= hi), axis=1)


def random_rotation(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A uniformly distributed 3x3 rotation matrix (QR of a Gaussian matrix, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def analytic_plate(
    kind: ShapeKind,
    thickness_mm: float,
    *,
    rotation: npt.ArrayLike | None = None,
    offset_mm: npt.ArrayLike = (0.0, 0.0, 0.0),
    spacing_mm: tuple[float, float, float] = DESS_SPACING_MM,
    extent_mm: float = 34.0,
    radius_mm: float = 9.0,
) -> AnalyticPlate:
    """Voxelise a layer of ``thickness_mm`` on a bone.

    Args:
        kind: ``"slab"`` (half-space bone, flat layer), ``"cylinder"`` (solid cylinder of
            ``radius_mm`` with a shell), ``"sphere"`` (ball of ``radius_mm`` with a shell) or
            ``"wedge"`` (half-space bone, layer of ``thickness_mm + WEDGE_SLOPE * u`` at
            ``u`` mm along the shape's first axis from its centre).
        thickness_mm: layer thickness in mm.
        rotation: 3x3 rotation applied to the shape (slab normal = rotation @ z, cylinder
            axis = rotation @ z); identity when omitted.
        offset_mm: shift of the shape's centre from the grid centre, mm (sub-voxel placement).
        spacing_mm: voxel spacing along i, j, k in mm.
        extent_mm: edge length of the cubic field of view in mm.
        radius_mm: bone radius of the cylinder and sphere.

    Returns:
        The :class:`AnalyticPlate`.
    """
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    shape = tuple(int(np.ceil(extent_mm / s)) for s in spacing)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = -(np.array(shape) - 1) * spacing / 2.0
    axes = [affine[d, 3] + np.arange(n) * spacing[d] for d, n in enumerate(shape)]
    # coordinates of voxel centres in the shape's own frame (rotation^T (x - centre))
    centre = np.asarray(offset_mm, dtype=np.float64)
    u = [np.zeros(shape, np.float32) for _ in range(3)]
    for row in range(3):
        acc = np.zeros(shape, np.float64)
        for d in range(3):
            sl: list[slice | None] = [None, None, None]
            sl[d] = slice(None)
            acc = acc + rot[d, row] * (axes[d] - centre[d])[tuple(sl)]
        u[row] = acc.astype(np.float32)
    slope = 0.0
    if kind == "slab":
        h = u[2]
        bone = h < 0
        cartilage = (h >= 0) & (h < thickness_mm)
    elif kind == "wedge":
        slope = WEDGE_SLOPE
        h = u[2]
        bone = h < 0
        cartilage = (h >= 0) & (h < thickness_mm + slope * u[0])
    elif kind == "cylinder":
        r = np.sqrt(u[0] ** 2 + u[1] ** 2)
        bone = r < radius_mm
        cartilage = (r >= radius_mm) & (r < radius_mm + thickness_mm)
    elif kind == "sphere":
        r = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
        bone = r < radius_mm
        cartilage = (r >= radius_mm) & (r < radius_mm + thickness_mm)
    else:
        raise InputError(
            f"unknown phantom kind {kind!r}; use 'slab', 'cylinder', 'sphere' or 'wedge'"
        )
    return AnalyticPlate(cartilage, bone, affine, float(thickness_mm), 2.5, rot, centre, slope)
