"""Wirth-Eckstein (2008) regions of one measured plate: every ``we2008_*`` column.

The region definitions live in :mod:`kneescope.core.we2008` (shared with the generator's exact
truth, :mod:`kneescope.synth.region_truth`); this module feeds them the measured bone surface:
the bone mesh's vertices in knee coordinates with their areas, which of them cartilage covers
(cAB) and which are denuded bone inside the plate's footprint (tAB = cAB + denuded), the
per-vertex thickness, and the cartilage voxels, each of which gives its volume to its nearest
tAB vertex (so a region's VC is the cartilage standing on its bone).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from kneescope.core import we2008

F64 = npt.NDArray[np.float64]


def voxel_volume_per_vertex(
    bone_mm: F64, tab: npt.NDArray[np.bool_], voxels_mm: F64, voxel_mm3: float
) -> F64:
    """Cartilage volume (mm^3) standing on each bone vertex: every cartilage voxel centre
    (M, 3, world mm) goes to its nearest tAB vertex (``bone_mm`` (N, 3) world mm, ``tab``
    (N,) bool); zero for vertices outside tAB. Sums to ``M * voxel_mm3``."""
    out = np.zeros(len(bone_mm))
    idx = np.flatnonzero(tab)
    if len(idx) == 0 or len(voxels_mm) == 0:
        return out
    _, nearest = cKDTree(bone_mm[idx]).query(voxels_mm, k=1)
    out[idx] = np.bincount(nearest, minlength=len(idx)) * voxel_mm3
    return out


def plate_region_values(
    plate: str,
    knee_pts: F64,
    area: F64,
    covered: npt.NDArray[np.bool_],
    tab: npt.NDArray[np.bool_],
    thickness_mm: F64,
    volume_mm3: F64,
) -> dict[str, float]:
    """Every ``we2008_*`` column of the regions of ``plate``
    (:data:`kneescope.core.we2008.PLATE_REGIONS`).

    Args:
        plate: kneescope plate name.
        knee_pts: (N, 3) bone vertices in knee coordinates (medial, anterior, superior) mm.
        area: (N,) vertex areas mm^2.
        covered: (N,) cartilage over the vertex (cAB).
        tab: (N,) vertex belongs to tAB (covered or denuded inside the footprint).
        thickness_mm: (N,) thickness at covered vertices (NaN elsewhere is fine).
        volume_mm3: (N,) cartilage volume standing on each vertex
            (:func:`voxel_volume_per_vertex`).
    """
    masks = we2008.region_masks(plate, knee_pts, area, covered & tab, tab)
    return we2008.region_quantities(masks, area, covered & tab, thickness_mm, volume_mm3)
