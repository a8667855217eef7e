"""A geometric toy knee with exactly known biomarkers, for tests and timing.

Not anatomy: a tibia (elliptic cylinder with a flat plateau at height 0), two flat elliptic
tibial cartilage plates, femoral condyles as two cylinders along the medial-lateral axis joined
in front by a trochlear band, with a cartilage shell, a spherical patella with a posterior
cartilage cap, and wedge-shaped menisci on elliptic annuli. Every cartilage layer has constant
thickness, so the true thickness, the meniscal extrusion, the tibial coverage and the denuded
area are known in closed form. Plates have square edges, where nearest-surface thickness
falls off over about a millimetre: plate means come out a few per cent below the nominal
thickness.

Knee coordinates are (medial, anterior, superior) in mm; the phantom is placed in the world by
a rotation and the side (a left knee is the mirror image of a right one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.types import Side

TIBIA_RADII_MM = (38.0, 26.0)
PLATES = {  # label: (centre medial, centre anterior, radius medial, radius anterior)
    4: (18.0, 0.0, 13.0, 18.0),
    5: (-18.0, 0.0, 12.0, 16.0),
}
MENISCUS_OF_PLATE = {4: 8, 5: 9}
MENISCUS_HEIGHT_MM = 4.0
CONDYLE_RADIUS_MM = 22.0
CONDYLE_SPANS_MM = ((6.0, 32.0), (-31.0, -6.0))
PATELLA_RADIUS_MM = 13.0


@dataclass(frozen=True)
class ToyKneeSpec:
    """Parameters of the toy knee (thicknesses in mm, annulus radii relative to the plate)."""

    femoral_thickness_mm: float = 2.0
    medial_tibial_thickness_mm: float = 1.8
    lateral_tibial_thickness_mm: float = 2.4
    patellar_thickness_mm: float = 3.0
    meniscus_inner: float = 0.75
    medial_meniscus_outer: float = 1.6
    lateral_meniscus_outer: float = 1.45
    medial_denuded_radius_mm: float = 0.0


@dataclass(frozen=True)
class ToyKnee:
    """A rendered toy knee and its truth.

    Attributes:
        labels: uint8 label Volume (kneescope labels), metadata side set.
        truth: biomarker name -> exact value (names as in :func:`measure_knee` results).
    """

    labels: Volume
    truth: dict[str, float] = field(default_factory=dict)


def toy_knee_truth(spec: ToyKneeSpec) -> dict[str, float]:
    """Closed-form values of the toy knee's biomarkers."""
    out = {
        "femoral_cartilage_thickness_mean_mm": spec.femoral_thickness_mm,
        "medial_tibial_cartilage_thickness_mean_mm": spec.medial_tibial_thickness_mm,
        "lateral_tibial_cartilage_thickness_mean_mm": spec.lateral_tibial_thickness_mm,
        "patellar_cartilage_thickness_mean_mm": spec.patellar_thickness_mm,
        "medial_tibial_denuded_bone_area_mm2": np.pi * spec.medial_denuded_radius_mm**2,
    }
    for label, name, outer in (
        (4, "medial", spec.medial_meniscus_outer),
        (5, "lateral", spec.lateral_meniscus_outer),
    ):
        mc, _ac, rm, _ra = PLATES[label]
        out[f"{name}_meniscus_extrusion_mm"] = abs(mc) + rm * outer - TIBIA_RADII_MM[0]
        out[f"{name}_tibial_coverage_pct"] = 100.0 * (1.0 - spec.meniscus_inner**2)
    return out


def render_toy_knee(
    spec: ToyKneeSpec = ToyKneeSpec(),
    *,
    side: Side = "right",
    rotation: npt.ArrayLike | None = None,
    spacing_mm: tuple[float, float, float] = (0.7, 0.3646, 0.3646),
    shape: tuple[int, int, int] = (160, 384, 384),
    centre_offset_mm: npt.ArrayLike = (0.0, 0.0, 0.0),
) -> ToyKnee:
    """Render the toy knee on a grid by the exact inside test at voxel centres.

    Args:
        spec: geometry parameters.
        side: "right" or "left" (left is mirrored through the medial-lateral axis).
        rotation: 3x3 rotation from the scanner's RAS axes to the knee's placement; the
            identity puts the knee upright (superior = +S, anterior = +A).
        spacing_mm: voxel spacing along i, j, k.
        shape: grid shape (I, J, K); the grid is axis-aligned (i = R, j = A, k = S) and
            centred on the knee plus ``centre_offset_mm``.
        centre_offset_mm: world position of the knee origin relative to the grid centre.

    Returns:
        :class:`ToyKnee` with a uint8 label Volume and the truth.
    """
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = -(np.array(shape) - 1) * spacing / 2.0 - np.asarray(centre_offset_mm)
    # world RAS -> knee (medial, anterior, superior): right knee medial = -R, left = +R
    lat_sign = -1.0 if side == "right" else 1.0
    to_knee = np.diag([lat_sign, 1.0, 1.0]) @ rot.T
    axes = [affine[d, 3] + np.arange(n) * spacing[d] for d, n in enumerate(shape)]
    coords = []
    for row in range(3):
        acc = np.zeros(shape, np.float32)
        for d in range(3):
            if to_knee[row, d] != 0.0:
                sl: list[slice | None] = [None, None, None]
                sl[d] = slice(None)
                acc += (to_knee[row, d] * axes[d]).astype(np.float32)[tuple(sl)]
        coords.append(acc)
    m, a, s = coords
    labels = np.zeros(shape, np.uint8)
    _draw(labels, m, a, s, spec)
    meta = {"side": side, "source": "toy_knee"}
    return ToyKnee(Volume(labels, affine, meta), toy_knee_truth(spec))


def _draw(
    labels: npt.NDArray[np.uint8],
    m: npt.NDArray[np.float32],
    a: npt.NDArray[np.float32],
    s: npt.NDArray[np.float32],
    spec: ToyKneeSpec,
) -> None:
    rm_t, ra_t = TIBIA_RADII_MM
    labels[((m / rm_t) ** 2 + (a / ra_t) ** 2 < 1.0) & (s < 0.0) & (s > -45.0)] = 3
    thick = {4: spec.medial_tibial_thickness_mm, 5: spec.lateral_tibial_thickness_mm}
    outer = {4: spec.medial_meniscus_outer, 5: spec.lateral_meniscus_outer}
    for label, (mc, ac, rm, ra) in PLATES.items():
        rho = np.sqrt(((m - mc) / rm) ** 2 + ((a - ac) / ra) ** 2)
        layer = (s >= 0.0) & (s < thick[label])
        plate = layer & (rho < 1.0)
        if label == 4 and spec.medial_denuded_radius_mm > 0:
            plate &= (m - mc) ** 2 + (a - ac) ** 2 >= spec.medial_denuded_radius_mm**2
        labels[plate] = label
        base = np.where(rho < 1.0, thick[label], 0.0)
        # a wedge rising from 1 mm at the inner edge (resolvable at 0.7 mm voxels)
        ramp = np.clip((rho - spec.meniscus_inner) / (1.0 - spec.meniscus_inner), 0.0, 1.0)
        height = 1.0 + (MENISCUS_HEIGHT_MM - 1.0) * ramp
        on_side = (m > 1.0) if label == 4 else (m < -1.0)
        ring = (rho > spec.meniscus_inner) & (rho < outer[label]) & on_side
        labels[ring & (s >= base) & (s < base + height)] = MENISCUS_OF_PLATE[label]
    t_f = spec.femoral_thickness_mm
    gap = 4.5
    zc = max(thick.values()) + gap + t_f + CONDYLE_RADIUS_MM
    r_cyl = np.sqrt(a**2 + (s - zc) ** 2)
    in_span = np.zeros(labels.shape, bool)
    for lo, hi in CONDYLE_SPANS_MM:
        in_span |= (m >= lo) & (m <= hi)
    # the trochlea joins the condyles in front, so femur and its cartilage are one piece each
    in_span |= (np.abs(m) < CONDYLE_SPANS_MM[0][0] + 0.5) & (a > 12.0)
    shaft = (np.abs(m) < 30.0) & (np.abs(a) < 20.0) & (s >= zc) & (s < zc + 50.0)
    femur = (in_span & (r_cyl < CONDYLE_RADIUS_MM)) | shaft
    fem_cart = (
        in_span
        & (r_cyl >= CONDYLE_RADIUS_MM)
        & (r_cyl < CONDYLE_RADIUS_MM + t_f)
        & (s < zc + 8.0)
        & ~shaft
    )
    labels[femur] = 1
    labels[fem_cart] = 2
    t_p = spec.patellar_thickness_mm
    ap = CONDYLE_RADIUS_MM + t_f + PATELLA_RADIUS_MM + t_p + 2.0
    sp = zc + 10.0
    r_pat = np.sqrt(m**2 + (a - ap) ** 2 + (s - sp) ** 2)
    labels[r_pat < PATELLA_RADIUS_MM] = 6
    labels[(r_pat >= PATELLA_RADIUS_MM) & (r_pat < PATELLA_RADIUS_MM + t_p) & (a < ap - 4.0)] = 7


def rotation_from_euler_deg(x: float, y: float, z: float) -> npt.NDArray[np.float64]:
    """3x3 rotation Rz @ Ry @ Rx from angles about the world x, y, z axes in degrees."""
    a, b, c = np.radians([x, y, z])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


OBLIQUE_DEG = (8.0, -6.0, 12.0)
"""An oblique placement used by tests (no image axis parallel to an anatomical one)."""

COMPACT_SPACING_MM = (0.8, 0.5, 0.5)
COMPACT_SHAPE = (110, 200, 180)
COMPACT_OFFSET_MM = (0.0, -12.0, -22.0)


def render_compact_toy_knee(
    spec: ToyKneeSpec = ToyKneeSpec(medial_denuded_radius_mm=4.0),
    *,
    side: Side = "right",
    rotation: npt.ArrayLike | None = None,
) -> ToyKnee:
    """The toy knee on a 110 x 200 x 180 grid of 0.8 x 0.5 x 0.5 mm that holds all of it
    when tilted by up to ~15 deg (for tests: ~0.5 s to render, ~1-2 s to measure)."""
    return render_toy_knee(
        spec,
        side=side,
        rotation=rotation,
        spacing_mm=COMPACT_SPACING_MM,
        shape=COMPACT_SHAPE,
        centre_offset_mm=COMPACT_OFFSET_MM,
    )
