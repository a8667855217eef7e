"""Meniscal extrusion and tibial coverage.

Extrusion (mm, positive = beyond the rim): in the coronal slab (``half_width_mm`` either side)
through the centre of the compartment's tibial plate, the outermost point of the meniscus
minus the outermost point of the tibia within ``rim_depth_mm`` below the plateau; "outer" is
medial for the medial meniscus and lateral for the lateral one. Both come from sub-voxel
surfaces (see :mod:`kneescope.biomarkers.surfaces`), not voxel centres.

Coverage (%): the share of the tibial plate's projected area (interface and denuded bone,
seen from above, weighted by projected area) that the meniscus covers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kneescope.biomarkers.frame import KneeFrame
from kneescope.biomarkers.surfaces import iso_surface, smoothed_indicator

F64 = npt.NDArray[np.float64]


def outermost_in_slab(
    mask: npt.NDArray[np.bool_],
    affine: npt.NDArray[np.float64],
    frame: KneeFrame,
    *,
    outward_sign: float,
    anterior_mm: float,
    half_width_mm: float,
    superior_range_mm: tuple[float, float] | None,
    sigma_vox: float,
) -> float:
    """Largest ``outward_sign * medial`` coordinate (mm) of the structure's sub-voxel surface
    within the coronal slab |anterior - anterior_mm| <= half_width_mm (and, if given, with
    the superior coordinate in ``superior_range_mm``); NaN when the slab misses it."""
    if not mask.any():
        return float("nan")
    mesh = iso_surface(smoothed_indicator(mask, sigma_vox), affine)
    if len(mesh.vertices_mm) == 0:
        return float("nan")
    pts = frame.to_knee(mesh.vertices_mm)
    sel = np.abs(pts[:, 1] - anterior_mm) <= half_width_mm
    if superior_range_mm is not None:
        sel &= (pts[:, 2] >= superior_range_mm[0]) & (pts[:, 2] <= superior_range_mm[1])
    if not sel.any():
        return float("nan")
    return float(np.max(outward_sign * pts[sel, 0]))
