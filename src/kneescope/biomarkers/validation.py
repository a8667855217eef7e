"""Reference values that the synthetic knees' truth does not carry, computed from the
continuous phantom (kneescope.synth's implicit shape), for validating biomarkers.

Meniscal coverage: the share of the tibial plate's footprint (seen from above) that lies
under the meniscus, on a 0.2 mm grid in the canonical frame. Two definitions:

- *plain* (``visible_threshold_mm=0``): footprint = bone where the lesion-free imposed
  cartilage thickness exceeds the synth's bare threshold (0.15 mm); "under" = meniscus at any
  height above the plateau.
- *visible* (``visible_threshold_mm`` = half the largest voxel spacing, the synth truth's
  ``visible_threshold_mm``): the same half-voxel rule as the synth's
  ``thickness_mean_visible_mm``: the footprint is the region enclosed by the outline where the
  lesion-free cartilage is at least that thick (holes filled: thin OA cartilage inside the
  plate stays plate, as the measurement's convex hull keeps it), and a point counts as under
  the meniscus where the meniscus above it is at least that tall. Thinner tissue is mostly
  absent from a label map of that grid, so a label-map measurement can only be compared
  with this definition.

:func:`label_visibility_by_thickness` gives the evidence for the rule: the share of the truth
bone surface that a rendered label map shows covered by the plate's cartilage, per band of
imposed thickness; :func:`label_shown_thickness_truth` a threshold-free reference: the
imposed thickness averaged over exactly the bone that the label map shows covered.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.synth.anatomy import THIN_MM, KneeShape
from kneescope.synth.truth import plate_bone_sdf, plate_bone_triangles

STEP_MM = 0.2
MENISCUS_DZ_MM = 0.1
PLATE_LABELS = {"femoral": 2, "medial_tibial": 4, "lateral_tibial": 5, "patellar": 7}


def synth_tibial_coverage_pct(
    shape: KneeShape, medial: bool, visible_threshold_mm: float = 0.0
) -> float:
    """Exact-shape meniscal coverage (%) of the medial or lateral tibial plate.

    Args:
        shape: the synthetic knee's implicit shape.
        medial: medial (True) or lateral (False) compartment.
        visible_threshold_mm: 0 for the plain definition; otherwise the thinnest cartilage
            and the lowest meniscus (mm) that count (see the module docstring).
    """
    if medial:
        cx, cy, ax, ay = shape.cxm, shape.cym, shape.axm, shape.aym
        plate = "medial_tibial"
    else:
        cx, cy, ax, ay = shape.cxl, shape.cyl, shape.axl, shape.ayl
        plate = "lateral_tibial"
    xs = np.arange(cx - ax - 2.0, cx + ax + 2.0, STEP_MM, dtype=np.float32)
    ys = np.arange(cy - ay - 2.0, cy + ay + 2.0, STEP_MM, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    z0 = shape.plateau_height(gx, gy)
    t0 = shape.thickness(plate, gx, gy, z0, lesions=False)
    if visible_threshold_mm <= THIN_MM:
        footprint = t0 > THIN_MM
        min_height_mm = 0.0
    else:
        footprint = ndimage.binary_fill_holes(t0 >= visible_threshold_mm)
        min_height_mm = visible_threshold_mm
    height_mm = np.zeros(gx.shape, np.float32)
    for dz in np.arange(0.0, 12.0, MENISCUS_DZ_MM, dtype=np.float32):
        height_mm += MENISCUS_DZ_MM * (shape.meniscus_sdf(gx, gy, z0 + dz, medial) < 0)
    under = height_mm > 0 if min_height_mm == 0 else height_mm >= min_height_mm
    total = int(footprint.sum())
    return 100.0 * int((footprint & under).sum()) / total if total else float("nan")


def _bone_shown_covered(
    plate: str,
    shape: KneeShape,
    labels: npt.NDArray[np.integer],
    to_canonical: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Truth bone triangles of ``plate`` in its footprint: area (mm^2), imposed thickness
    (mm) and whether the label map shows them covered (see label_visibility_by_thickness)."""
    tri = plate_bone_triangles(plate, shape)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    keep = area > 1e-9
    tri, cross, area = tri[keep], cross[keep], area[keep]
    c = tri.mean(axis=1)
    n = cross / (2.0 * area[:, None])
    cf = c.astype(np.float32)
    t0 = shape.thickness(plate, cf[:, 0], cf[:, 1], cf[:, 2], lesions=False)
    t = shape.thickness(plate, cf[:, 0], cf[:, 1], cf[:, 2], lesions=True).astype(np.float64)
    # orient normals outwards (bone sdf grows outside)
    probe = (c + 0.2 * n).astype(np.float32)
    outside = plate_bone_sdf(plate, shape, probe[:, 0], probe[:, 1], probe[:, 2]) > 0
    n = np.where(outside[:, None], n, -n)
    mid = c + 0.5 * t[:, None] * n
    to_voxel = np.linalg.inv(to_canonical)
    ijk = mid @ to_voxel[:3, :3].T + to_voxel[:3, 3]
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    cart = (labels[box] == PLATE_LABELS[plate]).astype(np.float32)
    value = ndimage.map_coordinates(cart, (ijk - lo).T, order=1, mode="constant")
    foot = t0 > THIN_MM
    return area[foot], t[foot], value[foot] >= 0.5


def label_visibility_by_thickness(
    plate: str,
    shape: KneeShape,
    labels: npt.NDArray[np.integer],
    to_canonical: npt.NDArray[np.float64],
    edges_mm: tuple[float, ...] = (0.15, 0.25, 0.35, 0.45, 0.6, 1.0, 10.0),
) -> list[tuple[float, float, float, float]]:
    """Share of the truth bone surface that the label map shows covered, per thickness band.

    The plate's bone surface is triangulated as in the synth truth (marching cubes on a
    TRUTH_STEP_MM canonical grid, footprint = lesion-free imposed thickness > 0.15 mm). A
    triangle counts as *shown covered* where the label map, linearly interpolated at the
    middle of the imposed layer (centroid + t/2 along the outward bone normal), is at least
    half the plate's cartilage label. Uses no biomarker code.

    Args:
        plate: femoral, medial_tibial, lateral_tibial or patellar.
        shape: the knee's implicit shape.
        labels: (I, J, K) label map of the rendered knee.
        to_canonical: 4x4, voxel index -> canonical mm (``KneeSample.to_canonical``).
        edges_mm: band edges of the imposed thickness (mm).

    Returns:
        One tuple per band: (low mm, high mm, truth area mm^2, share shown covered 0..1).
    """
    area, t, shown = _bone_shown_covered(plate, shape, labels, to_canonical)
    rows = []
    for lo, hi in itertools.pairwise(edges_mm):
        band = (t > lo) & (t <= hi)
        a = float(area[band].sum())
        share = float(area[band & shown].sum() / a) if a > 0 else float("nan")
        rows.append((lo, hi, a, share))
    return rows


def label_shown_thickness_truth(
    plate: str,
    shape: KneeShape,
    labels: npt.NDArray[np.integer],
    to_canonical: npt.NDArray[np.float64],
) -> tuple[float, float]:
    """Imposed (truth) thickness averaged over the bone that the label map shows covered.

    A reference with no threshold: the area-weighted mean imposed thickness (mm) over the
    truth bone triangles with cartilage (> 0.15 mm) that the label map shows covered (as in
    :func:`label_visibility_by_thickness`), and their area (mm^2).
    """
    area, t, shown = _bone_shown_covered(plate, shape, labels, to_canonical)
    sel = shown & (t > THIN_MM)
    a = float(area[sel].sum())
    return (float((area * t)[sel].sum() / a) if a > 0 else float("nan")), a
