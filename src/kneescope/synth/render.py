"""Slab-wise rendering of a :class:`~kneescope.synth.anatomy.KneeShape` onto an oblique grid.

Partial volume is computed analytically rather than by brute-force supersampling: each
structure's occupancy of a voxel is a linear ramp of its signed distance across the voxel's
extent along the surface normal, ``clip(0.5 - d / w, 0, 1)`` with ``w = sum_i |n_i| h_i``
(``h`` = spacing). For a locally planar surface this is the box-filtered (infinitely
supersampled) occupancy up to a symmetric smoothing, so summed occupancies equal the volume
of the continuous shape. The distance fields are re-normalised by their numerical gradient.

Every voxel is split into the 10 kneescope label fractions (the truth the label map and the
truth tables come from) and, within each label, into the tissues of
:mod:`kneescope.core.tissues` (marrow / cortex / marrow lesion of a bone, a meniscus and its
tear; fibula, fluid, tendon, cruciates, vessels, Hoffa's fat pad, muscle and subcutaneous fat
in the unlabelled part). The tissue map is the per-voxel tissue with the largest fraction
*within the voxel's label*, so ``tissue_label_lut()[tissues] == labels`` wherever the label is
the argmax label. The clean image is ``sum_t fraction_t * contrast[t]`` (marrow modulated by a
trabecular texture).

Arrays: slabs are float32 ``(n_i, J, K)``; the grid is processed :data:`SLAB` slices at a
time (plus a one-slice halo for gradients) to bound memory (~0.5 GB at full size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.core import tissues as tt
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.sdf import F32, smoothstep

SLAB = 16
"""Slices rendered at once."""

N_LABELS = 10

CORTEX_MM = 1.2
"""Thickness of the dark cortical shell of every bone (mm)."""

CONTACT_GAP_MM = (0.25, 1.0)
"""Femorotibial joint space (mm between the opposing cartilage surfaces) over which the joint
fluid film fades in: where the surfaces are closer than the first value the plates are in
loaded contact (a synovial film of micrometres, invisible in MRI) and the partial-volume
remainder between them renders as cartilage, not as a bright fluid seam."""


@dataclass(frozen=True)
class Slab:
    """Rendered slab of ``n`` slices starting at slice ``i0``.

    Attributes:
        fractions: float32 (10, n, J, K) label fractions (sum 1 per voxel).
        image: float32 (n, J, K) noiseless, bias-free image (relative signal).
        labels: uint8 (n, J, K) argmax of ``fractions``.
        tissues: uint8 (n, J, K) tissue map (:mod:`kneescope.core.tissues` values).
    """

    i0: int
    fractions: npt.NDArray[np.float32]
    image: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    tissues: npt.NDArray[np.uint8]


def _ramp(d: F32, w: F32 | np.float32) -> F32:
    return np.clip(0.5 - d / w, 0.0, 1.0).astype(np.float32, copy=False)


def _normalised(s: F32, spacing: tuple[float, float, float]) -> tuple[F32, F32]:
    """(distance, ramp width) from a distance-like field; both mm, float32."""
    g = np.gradient(s)
    gw = np.sqrt(sum((gi / np.float32(h)) ** 2 for gi, h in zip(g, spacing, strict=True)))
    gw = np.maximum(gw, np.float32(1e-3))
    width = sum(np.abs(gi) for gi in g) / gw
    return (s / gw).astype(np.float32), np.maximum(width, np.float32(0.05)).astype(np.float32)


def slab_coordinates(
    to_canonical: npt.NDArray[np.float64], i: npt.NDArray[np.int64], shape_jk: tuple[int, int]
) -> tuple[F32, F32, F32]:
    """Canonical x, y, z (mm, float32, shape (len(i), J, K)) of voxels ``(i, :, :)``.

    ``to_canonical`` is the 4x4 voxel -> canonical-knee-frame affine.
    """
    ii = i.astype(np.float32)[:, None, None]
    jj = np.arange(shape_jk[0], dtype=np.float32)[None, :, None]
    kk = np.arange(shape_jk[1], dtype=np.float32)[None, None, :]
    out = []
    for r in range(3):
        a = to_canonical[r].astype(np.float32)
        out.append((a[0] * ii + a[1] * jj + (a[2] * kk + a[3])).astype(np.float32))
    return out[0], out[1], out[2]


TEXTURE_CELL_MM = 1.2
"""Lattice spacing of the marrow texture (trabecular-like intensity variation)."""
TEXTURE_AMPLITUDE = 0.25
"""Relative standard deviation of the marrow intensity texture."""


def marrow_texture(seed: int, half_extent_mm: float = 90.0) -> npt.NDArray[np.float32]:
    """Smoothed random lattice (float32, zero mean, unit std) over the canonical cube
    ``[-half_extent_mm, half_extent_mm]^3`` at :data:`TEXTURE_CELL_MM`."""
    n = int(2 * half_extent_mm / TEXTURE_CELL_MM) + 1
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, n, n), dtype=np.float32), 0.9)
    noise -= noise.mean()
    noise /= max(float(noise.std()), 1e-6)
    return noise.astype(np.float32)


def _texture_at(lattice: npt.NDArray[np.float32], x: F32, y: F32, z: F32) -> F32:
    half = (lattice.shape[0] - 1) * TEXTURE_CELL_MM / 2.0
    coords = [(c + np.float32(half)) / np.float32(TEXTURE_CELL_MM) for c in (x, y, z)]
    return ndimage.map_coordinates(lattice, coords, order=1, mode="nearest").astype(np.float32)


def render_slabs(
    shape: KneeShape,
    grid_shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    to_canonical: npt.NDArray[np.float64],
    texture: npt.NDArray[np.float32] | None = None,
    contrast: npt.NDArray[np.float32] | None = None,
) -> Iterator[Slab]:
    """Yield label fractions, tissue map and noiseless, bias-free image of consecutive slabs.

    ``texture``: optional :func:`marrow_texture` lattice modulating marrow intensity;
    ``contrast``: float32 (N_TISSUES,) relative signal per tissue (default
    ``core.tissues.CONTRASTS["dess"]``).
    """
    table = tt.CONTRASTS["dess"] if contrast is None else contrast
    if table.shape != (tt.N_TISSUES,):
        raise ValueError(f"contrast table must have shape ({tt.N_TISSUES},), got {table.shape}")
    n_i = grid_shape[0]
    for i0 in range(0, n_i, SLAB):
        i1 = min(i0 + SLAB, n_i)
        lo, hi = max(i0 - 1, 0), min(i1 + 1, n_i)
        idx = np.arange(lo, hi, dtype=np.int64)
        if idx.size < 2:  # np.gradient needs two samples per axis
            idx = np.array([lo - 1, lo] if lo > 0 else [lo, lo + 1], dtype=np.int64)
        x, y, z = slab_coordinates(to_canonical, idx, grid_shape[1:])
        keep = slice(i0 - int(idx[0]), i0 - int(idx[0]) + (i1 - i0))
        fr, img, lab, tis = _render_block(shape, x, y, z, spacing, texture, table, keep)
        yield Slab(i0, fr, img, lab, tis)


BAND_MM = 9.0
"""Distance fields are evaluated exactly within this band around each surface."""
TRUST_MM = 7.0
"""Gradient-normalised distances are used within this band; raw values beyond it."""
COARSE = 4
"""In-plane subsampling factor of the coarse pass that locates the bands."""


def banded(fn: Callable[[F32, F32, F32], F32], x: F32, y: F32, z: F32, band_mm: float) -> F32:
    """Evaluate ``fn`` exactly where its value may be within ``band_mm`` of 0.

    A coarse pass on every :data:`COARSE`-th row and column finds the band; elsewhere the
    coarse value (nearest neighbour) is kept. Arrays float32 (n, J, K).
    """
    c = COARSE
    _, J, K = x.shape
    dc = fn(x[:, ::c, ::c], y[:, ::c, ::c], z[:, ::c, ::c])
    # largest distance from a fine voxel to its coarse sample, mm
    step = float(np.max(np.abs(np.diff(x[0, :2, 0]))) + np.max(np.abs(np.diff(y[0, :2, 0]))))
    step += float(np.max(np.abs(np.diff(z[0, :2, 0]))))
    step = max(step, 1e-3) * c * 1.5
    near_c = ndimage.minimum_filter(np.abs(dc), size=(1, 3, 3), mode="nearest") < band_mm + step
    near = np.repeat(np.repeat(near_c, c, axis=1), c, axis=2)[:, :J, :K]
    out = np.repeat(np.repeat(dc, c, axis=1), c, axis=2)[:, :J, :K].copy()
    if near.any():
        out[near] = fn(x[near], y[near], z[near])
    return out


def _normalised_banded(s: F32, spacing: tuple[float, float, float]) -> tuple[F32, F32]:
    dn, w = _normalised(s, spacing)
    far = np.abs(s) >= TRUST_MM
    dn[far] = s[far]
    w[far] = np.float32(1.0)
    return dn, w


def _foot(s: F32, x: F32, y: F32, z: F32) -> tuple[F32, F32, F32]:
    """Canonical coordinates (mm, float32, shaped like ``x``) of each voxel's first-order foot
    point on the zero level of the distance-like field ``s``: ``p - s grad(s) / |grad(s)|^2``.

    The imposed cartilage thickness is a field on the bone surface (synth.truth integrates it
    there, as thickness along the bone normal). Evaluated at the foot rather than at the voxel,
    every point of a bone normal sees the thickness of its foot, so the rendered cartilage
    reaches exactly that thickness along the normal; evaluated at the voxel, it drew plates
    whose thickness changes along the normal 2-8 % off their truth (the patella thinner, the
    tibial plates thicker; docs/biomarkers.md, Validation). Needs >= 2 samples per axis.
    """
    g = np.gradient(s)  # per index step along the array axes
    # canonical displacement of one index step along each array axis (the grid is affine)
    step = np.array(
        [
            [c[1, 0, 0] - c[0, 0, 0], c[0, 1, 0] - c[0, 0, 0], c[0, 0, 1] - c[0, 0, 0]]
            for c in (x, y, z)
        ],
        dtype=np.float64,
    )
    to_world = np.linalg.inv(step).T.astype(np.float32)  # d/d(index) -> d/d(canonical)
    gx, gy, gz = (sum(to_world[r, i] * g[i] for i in range(3)) for r in range(3))
    scale = s / np.maximum(gx * gx + gy * gy + gz * gz, np.float32(1e-6))
    return (
        (x - scale * gx).astype(np.float32),
        (y - scale * gy).astype(np.float32),
        (z - scale * gz).astype(np.float32),
    )


def _masked(
    fn: Callable[..., F32], mask: npt.NDArray[np.bool_], x: F32, y: F32, z: F32, fill: float
) -> F32:
    out = np.full(x.shape, np.float32(fill), dtype=np.float32)
    if mask.any():
        out[mask] = fn(x[mask], y[mask], z[mask])
    return out


def _occupancy(
    fn: Callable[[F32, F32, F32], F32],
    where: npt.NDArray[np.bool_],
    x: F32,
    y: F32,
    z: F32,
    w: F32 | np.float32,
    cap: F32,
) -> F32 | None:
    """``min(ramp(fn), cap)`` evaluated on the voxels ``where`` (0 elsewhere); None when the
    structure occupies none of them (absent structures cost one evaluation, no full-size
    arrays)."""
    if not where.any():
        return None
    d = fn(x[where], y[where], z[where])
    ww = w[where] if isinstance(w, np.ndarray) and w.ndim else np.float32(w)
    occ = np.minimum(_ramp(d, ww), cap[where])
    if not (occ > 0).any():
        return None
    out = np.zeros(x.shape, dtype=np.float32)
    out[where] = occ
    return out


def _optional(
    fn: Callable[[F32, F32, F32], F32], x: F32, y: F32, z: F32, w: F32 | np.float32, cap: F32
) -> F32 | None:
    """Occupancy (capped by ``cap``) of a structure that may be absent or small: a coarse
    pass (:func:`banded`) first; None when it reaches no voxel."""
    d = banded(fn, x, y, z, 2.0)
    if float(d.min()) >= 0.5 * float(np.max(w)):
        return None
    return np.minimum(_ramp(d, w), cap)


def _running_argmax(
    candidates: list[tuple[int, F32 | None]], shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.uint8], F32]:
    """(tissue code, fraction) of the largest of ``candidates`` per voxel (first wins ties,
    as ``np.argmax``; None = absent everywhere). Sparse candidates (mostly 0, e.g. a thin
    structure) are compared only where they are non-zero."""
    code = np.full(shape, np.uint8(candidates[0][0]), dtype=np.uint8)
    first = candidates[0][1]
    best = np.zeros(shape, dtype=np.float32) if first is None else first.copy()
    flat_code, flat_best = code.reshape(-1), best.reshape(-1)
    for tissue, frac in candidates[1:]:
        if frac is None:
            continue
        nz = np.flatnonzero(frac)
        if nz.size < frac.size // 4:
            values = frac.reshape(-1)[nz]
            more = values > flat_best[nz]
            flat_code[nz[more]] = np.uint8(tissue)
            flat_best[nz[more]] = values[more]
            continue
        more = frac > best
        code[more] = np.uint8(tissue)
        np.maximum(best, frac, out=best)
    return code, best


def _render_block(
    shape: KneeShape,
    x: F32,
    y: F32,
    z: F32,
    spacing: tuple[float, float, float],
    texture: npt.NDArray[np.float32] | None,
    table: npt.NDArray[np.float32],
    keep: slice,
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.uint8]
]:
    """Fractions (10, n, J, K), image, label map and tissue map of the ``keep`` slices of a
    block (the block carries a one-slice halo for the distance-field gradients)."""
    one = np.float32(1.0)
    sF = banded(shape.femur_sdf, x, y, z, BAND_MM)
    sT = banded(shape.tibia_sdf, x, y, z, BAND_MM)
    sP = banded(shape.patella_sdf, x, y, z, BAND_MM)
    dF, wF = _normalised_banded(sF, spacing)
    dT, wT = _normalised_banded(sT, spacing)
    dP, wP = _normalised_banded(sP, spacing)
    dFib, wFib = _normalised_banded(banded(shape.fibula_sdf, x, y, z, BAND_MM), spacing)
    # cartilage thickness is read at the foot of each voxel's bone normal (see _foot)
    fFx, fFy, fFz = (c[keep] for c in _foot(sF, x, y, z))
    fTx, fTy, fTz = (c[keep] for c in _foot(sT, x, y, z))
    fPx, fPy, fPz = (c[keep] for c in _foot(sP, x, y, z))
    x, y, z = x[keep], y[keep], z[keep]
    dF, wF, dT, wT, dP, wP = dF[keep], wF[keep], dT[keep], wT[keep], dP[keep], wP[keep]
    dFib, wFib = dFib[keep], wFib[keep]

    t_max = 6.0
    tF = _masked(shape.femoral_thickness, (dF > -1.0) & (dF < t_max), fFx, fFy, fFz, 0.0)
    near_t = (dT > -1.0) & (dT < t_max) & (z > -12.0)
    tTm = _masked(shape.medial_tibial_thickness, near_t & (fTx < 0), fTx, fTy, fTz, 0.0)
    tTl = _masked(shape.lateral_tibial_thickness, near_t & (fTx >= 0), fTx, fTy, fTz, 0.0)
    tP = _masked(shape.patellar_thickness, (dP > -1.0) & (dP < t_max), fPx, fPy, fPz, 0.0)
    lateral_side = (fTx >= 0).astype(np.float32)
    tT = tTm + tTl

    oF, oT, oP = _ramp(dF, wF), _ramp(dT, wT), _ramp(dP, wP)
    oFc, oTc, oPc = _ramp(dF - tF, wF), _ramp(dT - tT, wT), _ramp(dP - tP, wP)

    fr = np.zeros((N_LABELS, *x.shape), dtype=np.float32)
    fr[1] = oF
    rem = one - oF
    fr[3] = np.minimum(oT, rem)
    rem -= fr[3]
    fr[6] = np.minimum(oP, rem)
    rem -= fr[6]
    fr[2] = np.minimum(np.maximum(oFc - oF, 0.0), rem)
    rem -= fr[2]
    tib_c = np.minimum(np.maximum(oTc - oT, 0.0), rem)
    fr[4] = tib_c * (one - lateral_side)
    fr[5] = tib_c * lateral_side
    rem -= tib_c
    fr[7] = np.minimum(np.maximum(oPc - oP, 0.0), rem)
    rem -= fr[7]
    outside_fem = -(dF - tF)
    s = shape.s
    zone = (z > -6.0) & (z < 10.0 + shape.p.meniscus_height * s) & (dT > -2.0) & (dF - tF > -2.0)
    tears: list[F32 | None] = []
    for label, medial in ((8, True), (9, False)):
        side = zone & ((x < 2.0) if medial else (x > -2.0))

        def men(xx: F32, yy: F32, zz: F32, medial: bool = medial) -> F32:
            return shape.meniscus_sdf(xx, yy, zz, medial)

        def tear(xx: F32, yy: F32, zz: F32, medial: bool = medial) -> F32:
            return shape.meniscus_tear_sdf(xx, yy, zz, medial)

        m = np.maximum(_masked(men, side, x, y, z, 10.0), outside_fem)
        fr[label] = np.minimum(_ramp(m, wT), rem)
        rem -= fr[label]
        tears.append(_occupancy(tear, fr[label] > 0, x, y, z, wT, fr[label]))
    fr[0] = np.maximum(rem, 0.0)
    # = np.argmax(fr, axis=0) (first maximum wins), several times faster
    labels, _ = _running_argmax([(v, fr[v]) for v in range(N_LABELS)], x.shape)

    # --- tissues within the bones: marrow, cortex, marrow lesion ---------------------------
    marrow_gain = np.ones_like(x)
    o_fib = np.minimum(_ramp(dFib, wFib), fr[0])
    if texture is not None:
        in_bone = (fr[1] + fr[3] + fr[6] + o_fib) > 0
        if in_bone.any():
            tex = _texture_at(texture, x[in_bone], y[in_bone], z[in_bone])
            marrow_gain[in_bone] = np.clip(1.0 + np.float32(TEXTURE_AMPLITUDE) * tex, 0.3, 2.0)

    def lesion_of(bone: str) -> Callable[[F32, F32, F32], F32]:
        def fn(xx: F32, yy: F32, zz: F32) -> F32:
            return shape.marrow_lesion_sdf(xx, yy, zz, "femur" if bone == "femur" else "tibia")

        return fn

    img = np.zeros_like(x)
    tissues = np.zeros(x.shape, dtype=np.uint8)
    bones = (
        (1, dF, wF, fr[1], tt.FEMUR_MARROW, tt.FEMUR_CORTEX, tt.FEMUR_LESION, "femur"),
        (3, dT, wT, fr[3], tt.TIBIA_MARROW, tt.TIBIA_CORTEX, tt.TIBIA_LESION, "tibia"),
        (6, dP, wP, fr[6], tt.PATELLA_MARROW, tt.PATELLA_CORTEX, -1, ""),
    )
    for label, d, w, o, t_marrow, t_cortex, t_lesion, name in bones:
        marrow = np.minimum(_ramp(d + np.float32(CORTEX_MM), w), o)
        cortex = o - marrow
        o_les = _optional(lesion_of(name), x, y, z, w, marrow) if t_lesion >= 0 else None
        if o_les is not None:
            marrow = marrow - o_les
            img += o_les * table[t_lesion]
        img += marrow * table[t_marrow] * marrow_gain + cortex * table[t_cortex]
        code = np.where(cortex > marrow, np.uint8(t_cortex), np.uint8(t_marrow))
        if o_les is not None:
            code[(o_les > marrow) & (o_les > cortex)] = t_lesion
        np.copyto(tissues, code, where=labels == label)

    # --- cartilage plates: one tissue each ------------------------------------------------
    for label, tissue in (
        (2, tt.FEMORAL_CARTILAGE),
        (4, tt.MEDIAL_TIBIAL_CARTILAGE),
        (5, tt.LATERAL_TIBIAL_CARTILAGE),
        (7, tt.PATELLAR_CARTILAGE),
    ):
        img += fr[label] * table[tissue]
        tissues[labels == label] = tissue

    # --- menisci and their tears ----------------------------------------------------------
    for label, tissue, t_tear, torn_frac in (
        (8, tt.MEDIAL_MENISCUS, tt.MEDIAL_MENISCUS_TEAR, tears[0]),
        (9, tt.LATERAL_MENISCUS, tt.LATERAL_MENISCUS_TEAR, tears[1]),
    ):
        here = labels == label
        if torn_frac is None:
            img += fr[label] * table[tissue]
            tissues[here] = tissue
            continue
        intact = fr[label] - torn_frac
        img += intact * table[tissue] + torn_frac * table[t_tear]
        code = np.where(torn_frac > intact, np.uint8(t_tear), np.uint8(tissue))
        np.copyto(tissues, code, where=here)

    # --- unlabelled tissue ----------------------------------------------------------------
    rem = fr[0] - o_fib
    fib_marrow = np.minimum(_ramp(dFib + np.float32(CORTEX_MM), wFib), o_fib)
    fib_cortex = o_fib - fib_marrow
    img += fib_marrow * table[tt.FIBULA_MARROW] * marrow_gain + fib_cortex * table[tt.FIBULA_CORTEX]
    o_lig = np.minimum(_ramp(banded(shape.cruciate_sdf, x, y, z, 2.0), wT), rem)
    rem = rem - o_lig
    w_mean = np.float32(float(np.mean(spacing)))
    a, b = dF - tF, dT - tT  # mm outside the femoral / tibial cartilage surfaces
    joint = np.maximum(a, np.minimum(b, dP - tP) - np.float32(2.0 + 2.0 * shape.p.effusion))
    o_fluid = np.minimum(_ramp(joint - np.float32(1.0), w_mean), rem)
    # loaded femorotibial contact: no fluid where the opposing surfaces (nearly) touch; the
    # partial-volume remainder there is rendered with the signal of the nearer cartilage
    thin = (o_fluid > 0) & (a + b < np.float32(CONTACT_GAP_MM[1]))
    contact_fill = np.zeros_like(x)
    if thin.any():
        ab = a[thin] + b[thin]
        film = o_fluid[thin]
        fill = film * (one - smoothstep(CONTACT_GAP_MM[0], CONTACT_GAP_MM[1], ab))
        o_fluid[thin] = film - fill
        contact_fill[thin] = fill
        tib = np.where(
            x[thin] < 0, table[tt.MEDIAL_TIBIAL_CARTILAGE], table[tt.LATERAL_TIBIAL_CARTILAGE]
        )
        signal = np.where(b[thin] < a[thin], tib, table[tt.FEMORAL_CARTILAGE])
        img[thin] += fill * signal
    pouch = banded(shape.fluid_sdf, x, y, z, 2.0)
    o_fluid = np.maximum(o_fluid, np.minimum(_ramp(pouch, w_mean), rem - contact_fill))
    rem = rem - o_fluid - contact_fill
    tendon = banded(shape.patellar_tendon_sdf, x, y, z, 2.0)
    o_tendon = np.minimum(_ramp(tendon, w_mean), rem)
    rem = rem - o_tendon
    o_vessel = _optional(shape.vessel_sdf, x, y, z, w_mean, rem)
    if o_vessel is not None:
        rem = rem - o_vessel
    o_pad = _optional(shape.fat_pad_sdf, x, y, z, w_mean, rem)
    if o_pad is not None:
        rem = rem - o_pad
    d_leg = banded(shape.leg_sdf, x, y, z, 10.0)
    o_leg = np.minimum(_ramp(d_leg, w_mean), rem)
    rem = rem - o_leg
    muscle_w = (one - smoothstep(-22.0 * s, -8.0 * s, y)) * (
        one - smoothstep(-9.0 * s, -5.0 * s, d_leg)
    )
    o_muscle = o_leg * muscle_w
    o_fat = o_leg - o_muscle
    img += (
        o_lig * table[tt.CRUCIATE]
        + o_fluid * table[tt.FLUID]
        + o_tendon * table[tt.TENDON]
        + o_muscle * table[tt.MUSCLE]
        + o_fat * table[tt.FAT]
        + np.maximum(rem, 0.0) * table[tt.BACKGROUND]
    )
    for occ, tissue in ((o_vessel, tt.VESSEL), (o_pad, tt.FAT_PAD)):
        if occ is not None:
            img += occ * table[tissue]
    code, _ = _running_argmax(
        [
            (tt.BACKGROUND, rem),
            (tt.FIBULA_MARROW, fib_marrow),
            (tt.FIBULA_CORTEX, fib_cortex),
            (tt.CRUCIATE, o_lig),
            (tt.FLUID, o_fluid),
            (tt.TENDON, o_tendon),
            (tt.VESSEL, o_vessel),
            (tt.FAT_PAD, o_pad),
            (tt.MUSCLE, o_muscle),
            (tt.FAT, o_fat),
        ],
        x.shape,
    )
    np.copyto(tissues, code, where=labels == 0)
    return fr, img.astype(np.float32, copy=False), labels, tissues
