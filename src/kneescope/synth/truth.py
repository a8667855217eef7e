"""Known truth of a synthetic knee: cartilage thickness, areas, volumes, extrusion.

Definitions (also in docs/synth.md):

- *Plate footprint*: the part of the subchondral bone surface where the healthy (lesion-free)
  imposed thickness of the plate is > :data:`~kneescope.synth.anatomy.THIN_MM`.
- *Covered area* (``area_mm2``): footprint area where the actual imposed thickness (with
  lesions) is > THIN_MM; *denuded area* (``denuded_area_mm2``): footprint area where it is not
  (full-thickness defects).
- *Imposed thickness*: :meth:`~kneescope.synth.anatomy.KneeShape.thickness`, after the
  loaded-contact compression (the same field the renderer draws).
- *Mean thickness* (``thickness_mean_mm``): the area-weighted mean of the imposed thickness
  over the covered area, i.e. the thickness measured along the bone-surface normal averaged
  over the cartilage-covered bone surface (``thickness_mean_ab_mm``: over the whole footprint,
  denuded parts counting 0). Regional means use the same rule inside each region.
- Volumes are computed from the analytically partial-volumed rendering (see
  :mod:`kneescope.synth.render`): the volume of the continuous shapes.
- Extrusion: the distance (mm) the meniscus' outer edge reaches beyond the tibial plateau rim
  in the coronal plane through the compartment centre (negative: inside the rim).
- *Visible* mean thickness and area (``thickness_mean_visible_mm``, ``area_visible_mm2``): the
  same over bone where the imposed thickness is at least ``visible_threshold_mm`` (half the
  largest voxel spacing of the rendered grid): the reference for label-map measurements
  (evidence in docs/biomarkers.md, Synthetic knees).

The bone surface is extracted by marching cubes on a :data:`TRUTH_STEP_MM` canonical grid
(:func:`plate_bone_triangles`).

``KneeTruth.biomarkers`` holds the exact value of each ``kneescope measure`` column the
generator can give, under that column's name: every Wirth-Eckstein ``we2008_*`` column
(:mod:`kneescope.synth.region_truth`, the same region definitions as the measurement on these
triangles with the imposed thickness) and the extrusion columns
(:mod:`kneescope.synth.extrusion_truth`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from skimage.measure import marching_cubes

from kneescope.config import FROZEN
from kneescope.synth.anatomy import PLATES, THIN_MM, KneeShape
from kneescope.synth.extrusion_truth import extrusion_truth
from kneescope.synth.sdf import F32

TRUTH_STEP_MM = 0.5


class PlateTruth(BaseModel):
    """Truth of one cartilage plate (mm, mm^2, mm^3).

    ``*_visible_*``: the same mean and area restricted to bone where the imposed thickness is
    at least ``visible_threshold_mm`` (half the largest voxel spacing of the rendered grid):
    thinner cartilage is mostly absent from a label map of that grid.
    """

    model_config = FROZEN

    thickness_mean_mm: float
    thickness_mean_ab_mm: float
    thickness_max_mm: float
    regional_thickness_mm: dict[str, float]
    area_mm2: float
    footprint_area_mm2: float
    denuded_area_mm2: float
    volume_mm3: float
    visible_threshold_mm: float = 0.0
    thickness_mean_visible_mm: float = 0.0
    area_visible_mm2: float = 0.0


class KneeTruth(BaseModel):
    """Truth of one rendered knee scan.

    Attributes:
        side: knee side.
        plates: plate name -> :class:`PlateTruth`.
        meniscus_volume_mm3: ``{"medial": ..., "lateral": ...}``.
        extrusion_mm: ``{"medial": ..., "lateral": ...}``.
        label_volumes_mm3: label value (as str) -> continuous volume inside the grid.
        bone_gap_mm: smallest femur-tibia bone distance per compartment (vertical, mm).
        biomarkers: exact truth keyed by the ``kneescope measure`` column name it corresponds
            to (e.g. ``we2008_cMT_ThCtAB_mm``), in that column's unit; only the columns the
            generator can give exactly. A test compares ``measure_knee(...).values[name]``
            with ``biomarkers[name]`` for every key.
    """

    model_config = FROZEN

    side: str
    plates: dict[str, PlateTruth]
    meniscus_volume_mm3: dict[str, float]
    extrusion_mm: dict[str, float]
    label_volumes_mm3: dict[str, float]
    bone_gap_mm: dict[str, float]
    biomarkers: dict[str, float] = Field(default_factory=dict)


def _regions(plate: str, shape: KneeShape, c: F32) -> dict[str, np.ndarray]:
    x, y = c[:, 0], c[:, 1]
    if plate == "femoral":
        troch = y > shape.yd + 14.0 * shape.s
        return {
            "trochlea": troch,
            "medial_condyle": ~troch & (x < 0),
            "lateral_condyle": ~troch & (x >= 0),
        }
    if plate in ("medial_tibial", "lateral_tibial"):
        if plate == "medial_tibial":
            cy, ay = shape.cym, shape.aym
        else:
            cy, ay = shape.cyl, shape.ayl
        rel = (y - cy) / ay
        return {"posterior": rel < -1 / 3, "central": np.abs(rel) <= 1 / 3, "anterior": rel > 1 / 3}
    return {"medial_facet": x < shape.pc[0], "lateral_facet": x >= shape.pc[0]}


def _bbox(plate: str, shape: KneeShape) -> tuple[tuple[float, float], ...]:
    s = shape.s
    if plate == "femoral":
        zb = min(shape.zb_med, shape.zb_lat)
        return (
            (shape.x_med[0] - 2, shape.x_lat[1] + 2),
            (shape.yd - shape.ay - 4 * s, shape.yd + shape.ay + 4 * s),
            (zb - 2, zb + 2.2 * shape.az),
        )
    if plate in ("medial_tibial", "lateral_tibial"):
        return (
            (shape.cxm - shape.axm - 2, shape.cxl + shape.axl + 2),
            (-max(shape.aym, shape.ayl) - 4, max(shape.aym, shape.ayl) + 4),
            (-8.0, 4.0 + shape.p.spine_height),
        )
    cx, cy, cz = shape.pc
    ax, ay, az = shape.pr
    return ((cx - ax - 2, cx + ax + 2), (cy - ay - 2, cy + 2), (cz - az - 2, cz + az + 2))


def _bone_sdf(plate: str, shape: KneeShape, x: F32, y: F32, z: F32) -> F32:
    if plate == "femoral":
        return shape.femur_sdf(x, y, z)
    if plate == "patellar":
        return shape.patella_sdf(x, y, z)
    return shape.tibia_sdf(x, y, z)


def plate_bone_triangles(
    plate: str, shape: KneeShape, step_mm: float = TRUTH_STEP_MM
) -> npt.NDArray[np.float64]:
    """Triangles (T, 3 corners, xyz canonical mm; float64) of the bone surface under ``plate``.

    Marching cubes on the bone's distance field on a ``step_mm`` grid over the plate's box:
    the surface that the truth integrates over (also used by kneescope.biomarkers.validation).
    """
    box = _bbox(plate, shape)
    axes = [np.arange(lo, hi + step_mm, step_mm, dtype=np.float32) for lo, hi in box]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    sdf = _bone_sdf(plate, shape, x, y, z)
    verts, faces, _, _ = marching_cubes(  # type: ignore[no-untyped-call]
        sdf, level=0.0, spacing=(step_mm,) * 3
    )
    verts = verts + np.array([a[0] for a in axes], dtype=np.float64)
    return np.asarray(verts[faces], dtype=np.float64)


def plate_bone_sdf(plate: str, shape: KneeShape, x: F32, y: F32, z: F32) -> F32:
    """Signed distance-like field (mm, < 0 inside) of the bone under ``plate``."""
    return _bone_sdf(plate, shape, x, y, z)


def plate_surface_truth(
    plate: str,
    shape: KneeShape,
    volume_mm3: float,
    step_mm: float = TRUTH_STEP_MM,
    visible_threshold_mm: float = 0.0,
    triangles: npt.NDArray[np.float64] | None = None,
) -> PlateTruth:
    """Integrate the imposed thickness of ``plate`` over its bone surface (marching cubes;
    ``triangles``: the :func:`plate_bone_triangles` of ``step_mm`` when already computed)."""
    tri = plate_bone_triangles(plate, shape, step_mm) if triangles is None else triangles
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    c = tri.mean(axis=1).astype(np.float32)
    t0 = shape.thickness(plate, c[:, 0], c[:, 1], c[:, 2], lesions=False)
    t = shape.thickness(plate, c[:, 0], c[:, 1], c[:, 2], lesions=True)
    foot = t0 > THIN_MM
    covered = foot & (t > THIN_MM)
    a_cov = float(area[covered].sum())
    a_foot = float(area[foot].sum())
    mean = float((area * t)[covered].sum() / max(a_cov, 1e-9))
    regional = {}
    for name, mask in _regions(plate, shape, c).items():
        m = covered & mask
        regional[name] = float((area * t)[m].sum() / max(float(area[m].sum()), 1e-9))
    visible = foot & (t >= max(visible_threshold_mm, THIN_MM))
    a_vis = float(area[visible].sum())
    return PlateTruth(
        visible_threshold_mm=visible_threshold_mm,
        thickness_mean_visible_mm=float((area * t)[visible].sum() / max(a_vis, 1e-9)),
        area_visible_mm2=a_vis,
        thickness_mean_mm=mean,
        thickness_mean_ab_mm=float((area * t)[foot].sum() / max(a_foot, 1e-9)),
        thickness_max_mm=float(t.max(initial=0.0)),
        regional_thickness_mm=regional,
        area_mm2=a_cov,
        footprint_area_mm2=a_foot,
        denuded_area_mm2=a_foot - a_cov,
        volume_mm3=volume_mm3,
    )


def bone_gap(shape: KneeShape) -> dict[str, float]:
    """Smallest vertical femur-to-tibia bone distance per compartment (mm)."""
    out = {}
    for name, xr in (("medial", shape.x_med), ("lateral", shape.x_lat)):
        gx, gy, bottom = shape.femur_underside(xr)
        out[name] = float(np.min(bottom - shape.plateau_height(gx, gy)))
    return out


def knee_truth(
    shape: KneeShape, label_volumes_mm3: dict[int, float], visible_threshold_mm: float = 0.0
) -> KneeTruth:
    """Assemble :class:`KneeTruth` from the shape and the rendered label volumes."""
    from kneescope.synth.region_truth import we2008_truth  # imports this module

    plate_label = {"femoral": 2, "medial_tibial": 4, "lateral_tibial": 5, "patellar": 7}
    triangles = {plate: plate_bone_triangles(plate, shape) for plate in PLATES}
    plates = {
        plate: plate_surface_truth(
            plate,
            shape,
            label_volumes_mm3[plate_label[plate]],
            visible_threshold_mm=visible_threshold_mm,
            triangles=triangles[plate],
        )
        for plate in PLATES
    }
    volumes = {plate: label_volumes_mm3[plate_label[plate]] for plate in PLATES}
    biomarkers: dict[str, float] = we2008_truth(shape, volumes, triangles=triangles)
    biomarkers.update(extrusion_truth(shape))
    return KneeTruth(
        side=shape.p.side,
        plates=plates,
        meniscus_volume_mm3={"medial": label_volumes_mm3[8], "lateral": label_volumes_mm3[9]},
        extrusion_mm={"medial": shape.p.extrusion_medial, "lateral": shape.p.extrusion_lateral},
        label_volumes_mm3={str(k): v for k, v in sorted(label_volumes_mm3.items())},
        bone_gap_mm=bone_gap(shape),
        biomarkers=biomarkers,
    )
