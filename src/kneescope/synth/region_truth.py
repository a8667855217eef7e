"""Exact truth of the Wirth-Eckstein (2008) regions: every ``we2008_*`` measure column.

The same written definitions as the measurement (:mod:`kneescope.core.we2008`), applied to
the generator's *analytic* bone surface (marching cubes of the bone's distance field on a
:data:`~kneescope.synth.truth.TRUTH_STEP_MM` grid, as for :class:`PlateTruth`) with the
*imposed* thickness (:meth:`KneeShape.thickness`, lesions included):

- tAB: the plate's footprint, bone where the lesion-free imposed thickness exceeds
  :data:`~kneescope.synth.anatomy.THIN_MM`; cAB: where the actual one does (denuded = tAB
  without cAB: full-thickness defects);
- thickness: the imposed thickness along the bone normal (ThCcAB over cAB, ThCtAB over tAB);
- VC: the volume of the cartilage shell over each triangle, ``a t (1 + H t)`` for a triangle
  of area ``a``, imposed thickness ``t`` and mean curvature ``H`` of the bone there (the
  shell's volume to within ``K t^3 / 3`` per unit area, K the Gaussian curvature);
- the frame: built as :func:`kneescope.biomarkers.frame.knee_frame` and ``with_superior``
  build it from a label map (superior = area-weighted normal of the covered tibial bone,
  medial = lateral -> medial tibial cartilage centroid, origin their midpoint), here from the
  continuous shapes.

So a test comparing ``measure_knee(labels).values[c]`` with this truth for every column ``c``
checks everything the label map and the measurement add: voxelisation, sub-voxel surfaces,
thickness, coverage and the landmarks found on them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from kneescope.core import we2008
from kneescope.synth.anatomy import THIN_MM, KneeShape
from kneescope.synth.truth import TRUTH_STEP_MM, plate_bone_sdf, plate_bone_triangles

F64 = npt.NDArray[np.float64]
_H_MM = 0.2


def _normals_and_curvature(plate: str, shape: KneeShape, pts: F64) -> tuple[F64, F64]:
    """Unit outward normals (N, 3) and mean curvature (N,) (1/mm, > 0 where convex) of the
    plate's bone at points on it, from central differences of its distance-like field:
    ``H = div(grad f / |grad f|) / 2 = (|g|^2 tr(Hf) - g' Hf g) / (2 |g|^3)``."""
    p = pts.astype(np.float64)
    h = _H_MM

    def f(offset: tuple[float, float, float]) -> F64:
        q = (p + np.asarray(offset)).astype(np.float32)
        return np.asarray(plate_bone_sdf(plate, shape, q[:, 0], q[:, 1], q[:, 2]), np.float64)

    f0 = f((0.0, 0.0, 0.0))
    unit = np.eye(3) * h
    fp = [f(tuple(unit[d])) for d in range(3)]
    fm = [f(tuple(-unit[d])) for d in range(3)]
    g = np.stack([(fp[d] - fm[d]) / (2 * h) for d in range(3)], axis=1)
    hess = np.zeros((len(p), 3, 3))
    for d in range(3):
        hess[:, d, d] = (fp[d] - 2 * f0 + fm[d]) / (h * h)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        pp = f(tuple(unit[i] + unit[j]))
        pm = f(tuple(unit[i] - unit[j]))
        mp = f(tuple(-unit[i] + unit[j]))
        mm = f(tuple(-unit[i] - unit[j]))
        hess[:, i, j] = hess[:, j, i] = (pp - pm - mp + mm) / (4 * h * h)
    g2 = np.einsum("nd,nd->n", g, g)
    gn = np.sqrt(np.maximum(g2, 1e-12))
    trace = np.einsum("ndd->n", hess)
    ghg = np.einsum("nd,nde,ne->n", g, hess, g)
    mean_curv = (g2 * trace - ghg) / (2.0 * gn**3)
    return g / gn[:, None], mean_curv


class _PlateSurface:
    """One plate's analytic bone triangles with area, thickness, coverage and shell volume."""

    def __init__(
        self, plate: str, shape: KneeShape, step_mm: float, tri: F64 | None = None
    ) -> None:
        if tri is None:
            tri = plate_bone_triangles(plate, shape, step_mm)
        c = tri.mean(axis=1)
        c32 = c.astype(np.float32)
        t0 = shape.thickness(plate, c32[:, 0], c32[:, 1], c32[:, 2], lesions=False)
        t = shape.thickness(plate, c32[:, 0], c32[:, 1], c32[:, 2], lesions=True)
        keep = t0 > THIN_MM
        tri, c = tri[keep], c[keep]
        self.centres = c
        self.thickness = np.asarray(t[keep], dtype=np.float64)
        self.tab = np.ones(len(c), bool)
        self.covered = self.thickness > THIN_MM
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        self.area = 0.5 * np.linalg.norm(cross, axis=1)
        self.normals, curv = _normals_and_curvature(plate, shape, c)
        # shell of thickness t over the area element: t (1 + H t + K t^2 / 3); K t^2 / 3 is
        # left out (< 0.2 % for the condyles' radii of ~30 mm)
        th = self.thickness
        self.volume = np.where(self.covered, self.area * th * (1.0 + curv * th), 0.0)

    def cartilage_centroid(self) -> F64:
        """Centroid (3,) of the plate's cartilage shell (canonical mm)."""
        mid = self.centres + 0.5 * self.thickness[:, None] * self.normals
        return np.asarray(np.average(mid, axis=0, weights=self.volume + 1e-12), dtype=np.float64)


def _knee_rotation(surfaces: dict[str, _PlateSurface]) -> tuple[F64, F64]:
    """(origin (3,), rows (3, 3): medial, anterior, superior) of the knee frame, canonical."""
    sup = np.zeros(3)
    for name in ("medial_tibial", "lateral_tibial"):
        s = surfaces[name]
        sup += (s.normals[s.covered] * s.area[s.covered, None]).sum(axis=0)
    sup /= np.linalg.norm(sup)
    if sup[2] < 0:
        sup = -sup
    med_c = surfaces["medial_tibial"].cartilage_centroid()
    lat_c = surfaces["lateral_tibial"].cartilage_centroid()
    medial = med_c - lat_c
    medial = medial - sup * float(medial @ sup)
    medial /= np.linalg.norm(medial)
    anterior = np.cross(sup, -medial)
    if anterior[1] < 0:
        anterior = -anterior
    return 0.5 * (med_c + lat_c), np.stack([medial, anterior, sup])


def we2008_truth(
    shape: KneeShape,
    plate_volumes_mm3: Mapping[str, float] | None = None,
    step_mm: float = TRUTH_STEP_MM,
    triangles: Mapping[str, F64] | None = None,
) -> dict[str, float]:
    """Exact value of every ``we2008_*`` column (:func:`kneescope.core.we2008.all_columns`)
    for the knee ``shape`` (canonical frame; right and left knees alike).

    Args:
        shape: the knee.
        plate_volumes_mm3: kneescope plate -> its rendered (continuous) cartilage volume; when
            given, each plate's regions share it in proportion to the shell volume over them
            (the rendered plates differ from ``a t (1 + H t)`` shells by 1-8 %: the distance
            fields are distance-like, not exact distances at the thickness).
        step_mm: marching-cubes step of the bone surfaces.
        triangles: plate -> bone triangles already computed
            (:func:`~kneescope.synth.truth.plate_bone_triangles` with ``step_mm``).
    """
    surfaces = {
        plate: _PlateSurface(plate, shape, step_mm, None if triangles is None else triangles[plate])
        for plate in we2008.PLATE_REGIONS
    }
    origin, rows = _knee_rotation(surfaces)
    values: dict[str, float] = {}
    for plate, s in surfaces.items():
        volume = s.volume
        if plate_volumes_mm3 is not None:
            volume = volume * (plate_volumes_mm3[plate] / max(float(volume.sum()), 1e-9))
        knee_pts = (s.centres - origin) @ rows.T
        masks = we2008.region_masks(plate, knee_pts, s.area, s.covered, s.tab)
        values.update(we2008.region_quantities(masks, s.area, s.covered, s.thickness, volume))
    values.update(we2008.aggregate_quantities(values))
    return values
