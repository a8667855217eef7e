"""Synthetic radiographs: bilateral PA knee views and full-leg standing views, with truth.

Both are 2D :class:`~kneescope.core.Volume` s, ``array[i=row, j=column]`` uint16 with bone
bright (write them as MONOCHROME1 or 2; the io writer inverts stored values for MONOCHROME1).
Rows run to the patient's feet (Inferior), columns to the patient's Left (the usual display:
patient's right on the viewer's left).

Knee radiograph: the implicit knee of each side is projected along the anteroposterior axis
(path length through bone with a denser cortical shell, plus soft tissue), with osteophytes
and subchondral sclerosis whose size follows the KL grade, Beer-Lambert attenuation and
quantum noise. Truth per knee: minimum joint space width (mJSW, mm) of each compartment,
measured on the exact projected geometry: in every column of the compartment, the distance
from the lowest point of the projected femoral condyle to the tibial plateau floor (the
highest plateau point within the central half of the plateau depth); the minimum over the
central 60 % of the compartment width.

The full-leg standing radiograph lives in :mod:`kneescope.synth.full_leg`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.core import Volume
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.params import KneeParams
from kneescope.types import Affine

KNEE_PIXEL_MM = 0.2
MU_BONE = 0.012  # 1/mm (cortex-weighted path)
MU_SOFT = 0.006  # 1/mm
DISPLAY_MAX = 3800.0


@dataclass(frozen=True)
class KneeXrayTruth:
    """mJSW (mm) per compartment, KL grade and osteophyte grade drawn, per knee."""

    side: str
    mjsw_medial_mm: float
    mjsw_lateral_mm: float
    klg: int
    osteophyte_grade: int


def radiograph_affine(origin_ras: tuple[float, float, float], pixel_mm: float) -> Affine:
    """Nominal affine of a PA film: rows to Inferior, columns to the patient's Left (mm)."""
    a = np.zeros((4, 4))
    a[:3, 0] = (0.0, 0.0, -pixel_mm)  # rows -> Inferior
    a[:3, 1] = (-pixel_mm, 0.0, 0.0)  # columns -> patient's Left
    a[:3, 2] = (0.0, 1.0, 0.0)
    a[:3, 3] = origin_ras
    a[3, 3] = 1.0
    return a


def _projected_bone(
    shape: KneeShape, xs: npt.NDArray[np.float32], zs: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Cortex-weighted bone path length (mm) along y on the (x, z) grid, shape (Z, X).

    Each bone is evaluated only in the rows (z) it can occupy.
    """
    ys = np.arange(-45.0, 80.0, 1.0, dtype=np.float32)
    out = np.zeros((zs.size, xs.size), dtype=np.float32)
    zb = min(shape.zb_med, shape.zb_lat)
    pz, prz = shape.pc[2], shape.pr[2]
    bones = (
        (shape.femur_sdf, zb - 2.0, np.inf),
        (shape.tibia_sdf, -np.inf, shape.p.spine_height * shape.s + 4.0),
        (shape.patella_sdf, pz - prz - 2.0, pz + prz + 2.0),
        (shape.fibula_sdf, -np.inf, -5.0),
    )
    for fn, z_lo, z_hi in bones:
        rows = np.flatnonzero((zs >= z_lo) & (zs <= z_hi))
        if rows.size == 0:
            continue
        z3, x3 = np.meshgrid(zs[rows], xs, indexing="ij")
        acc = np.zeros(z3.shape, dtype=np.float32)
        for y0 in range(0, ys.size, 25):
            yy = ys[y0 : y0 + 25]
            d = fn(x3[:, :, None], np.broadcast_to(yy, (*z3.shape, yy.size)), z3[:, :, None])
            occ = np.clip(0.5 - d, 0.0, 1.0)
            cortex = occ - np.clip(0.5 - (d + 1.5), 0.0, 1.0)
            acc += (occ + 1.2 * cortex).sum(axis=2)
        out[rows] += acc
    return out


def _column_profiles(
    shape: KneeShape, xr: tuple[float, float], compartment: str
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(x, femur lowest z, plateau floor z) per column of one compartment (mm)."""
    s = shape.s
    if compartment == "medial":
        cx, ax, cy, ay = shape.cxm, shape.axm, shape.cym, shape.aym
    else:
        cx, ax, cy, ay = shape.cxl, shape.axl, shape.cyl, shape.ayl
    xs = np.linspace(cx - 0.6 * ax, cx + 0.6 * ax, 48, dtype=np.float32)
    xs = xs[(xs >= xr[0] + 2 * s) & (xs <= xr[1] - 2 * s)]
    ys = np.linspace(shape.yd - 25 * s, shape.yd + 25 * s, 41, dtype=np.float32)
    zb = min(shape.zb_med, shape.zb_lat)
    zs = np.arange(zb - 4.0, max(shape.zb_med, shape.zb_lat) + 8.0, 0.05, dtype=np.float32)
    gx, gy, gz = np.meshgrid(xs, ys, zs, indexing="ij")
    inside: npt.NDArray[np.bool_] = np.asarray(shape.femur_sdf(gx, gy, gz) <= 0, dtype=bool)
    col: npt.NDArray[np.bool_] = np.any(inside, axis=1)  # (x, z)
    femur_low = np.where(np.any(col, axis=1), zs[np.argmax(col, axis=1)], np.float32(np.inf))
    yc = np.linspace(cy - 0.5 * ay, cy + 0.5 * ay, 41, dtype=np.float32)
    px, py = np.meshgrid(xs, yc, indexing="ij")
    floor = shape.plateau_height(px, py).max(axis=1)
    return xs, femur_low.astype(np.float32), floor.astype(np.float32)


def knee_mjsw(shape: KneeShape) -> tuple[float, float]:
    """(medial, lateral) minimum joint space width (mm) on the projected geometry."""
    out = []
    for xr, name in ((shape.x_med, "medial"), (shape.x_lat, "lateral")):
        _, low, floor = _column_profiles(shape, xr, name)
        out.append(float(np.min(low - floor)))
    return out[0], out[1]


def _osteophytes(
    shape: KneeShape, grade: int, x2: npt.NDArray[np.float32], z2: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Path length (mm) through marginal osteophytes (ellipsoids) of ``grade`` 0..3."""
    if grade <= 0:
        return np.zeros_like(x2)
    r = 1.8 * grade
    zb = 0.5 * (shape.zb_med + shape.zb_lat)
    sites = [
        (shape.cxm - shape.axm - 0.3 * r, -1.5, r * 1.1, r * 0.8),
        (shape.cxl + shape.axl + 0.3 * r, -1.5, r * 0.8, r * 0.7),
        (shape.x_med[0] - 0.3 * r, zb + 7.0, r * 0.9, r * 1.2),
        (shape.x_lat[1] + 0.3 * r, zb + 7.0, r * 0.7, r * 1.0),
    ]
    out = np.zeros_like(x2)
    for sx, sz, rx, rz in sites:
        q = 1.0 - ((x2 - sx) / rx) ** 2 - ((z2 - sz) / rz) ** 2
        out += 2.0 * 3.0 * max(rx, rz) * np.sqrt(np.clip(q, 0.0, None))
    return out


def _sclerosis(
    shape: KneeShape,
    grade: int,
    medial: bool,
    x2: npt.NDArray[np.float32],
    z2: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Extra path length (mm) of sclerotic subchondral bone under the affected plateau."""
    if grade <= 0:
        return np.zeros_like(x2)
    cx, ax = (shape.cxm, shape.axm) if medial else (shape.cxl, shape.axl)
    band = np.exp(-(((x2 - cx) / (0.7 * ax)) ** 6)) * np.exp(-(((z2 + 4.0) / 3.5) ** 2))
    return (10.0 * grade * band).astype(np.float32)


def render_knee_radiograph(
    knees: dict[str, tuple[KneeParams, int, int, bool]], *, seed: int
) -> tuple[Volume, list[KneeXrayTruth]]:
    """Bilateral PA knee radiograph.

    Args:
        knees: side -> (params, KL grade, osteophyte grade 0..3, medial-predominant).
        seed: noise seed.

    Returns:
        (uint16 2D Volume at :data:`KNEE_PIXEL_MM`, truth per knee). The right knee is
        centred at RAS x = +100 mm, the left at -100 mm (as in the MRI).
    """
    px = KNEE_PIXEL_MM
    coarse = 1.0
    xs = np.arange(-60.0, 60.0 + coarse, coarse, dtype=np.float32)
    zs = np.arange(-70.0, 70.0 + coarse, coarse, dtype=np.float32)
    width_mm, height_mm = 330.0, 140.0
    n_rows, n_cols = round(height_mm / px), round(width_mm / px)
    top_z, left_x = 70.0, 165.0  # RAS z of row 0 and RAS x of column 0 (knee frame offsets)
    atten = np.zeros((n_rows, n_cols), dtype=np.float32)
    rows_z = top_z - np.arange(n_rows, dtype=np.float32) * px
    cols_x = left_x - np.arange(n_cols, dtype=np.float32) * px
    truths = []
    for side, (params, klg, osteo, medial) in knees.items():
        shape = KneeShape.from_params(params)
        bone = _projected_bone(shape, xs, zs)
        centre = 100.0 if side == "right" else -100.0
        mirror = 1.0 if side == "right" else -1.0
        # canonical x of every column (mirrored for the left knee), canonical z of every row
        cx = (cols_x - centre) * mirror
        zz, xx = np.meshgrid(rows_z, cx, indexing="ij")
        fi = (zz - zs[0]) / coarse
        fj = (xx - xs[0]) / coarse
        path = ndimage.map_coordinates(bone, [fi, fj], order=1, mode="constant", cval=0.0)
        path = path + _osteophytes(shape, osteo, xx, zz)
        path = path + _sclerosis(shape, max(klg - 1, 0), medial, xx, zz)
        leg_r = 62.0 * shape.s
        soft = 2.0 * np.sqrt(np.clip(leg_r**2 - xx**2, 0.0, None))
        atten += MU_BONE * path + MU_SOFT * soft
        mjsw_m, mjsw_l = knee_mjsw(shape)
        truths.append(KneeXrayTruth(side, mjsw_m, mjsw_l, klg, osteo))
    rng = np.random.default_rng(seed)
    signal = DISPLAY_MAX * (1.0 - np.exp(-atten)) + 150.0
    signal += rng.normal(0.0, 1.0, signal.shape).astype(np.float32) * np.sqrt(signal) * 0.8
    pixels = np.clip(np.rint(signal), 0, 4095).astype(np.uint16)
    affine = radiograph_affine((left_x, 20.0, -450.0 + top_z), px)
    meta = {"kind": "knee_pa_bilateral", "synthetic": True}
    return Volume(pixels, affine, meta), truths
