"""Slab-wise rendering of a :class:`~kneescope.synth.anatomy.KneeShape` onto an oblique grid.

Partial volume is computed analytically rather than by brute-force supersampling: each
structure's occupancy of a voxel is a linear ramp of its signed distance across the voxel's
extent along the surface normal, ``clip(0.5 - d / w, 0, 1)`` with ``w = sum_i |n_i| h_i``
(``h`` = spacing). For a locally planar surface this is the box-filtered (infinitely
supersampled) occupancy up to a symmetric smoothing, so summed occupancies equal the volume
of the continuous shape. The distance fields are re-normalised by their numerical gradient.

Arrays: slabs are float32 ``(n_i, J, K)``; the grid is processed :data:`SLAB` slices at a
time (plus a one-slice halo for gradients) to bound memory (~0.5 GB at full size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.synth.anatomy import KneeShape
from kneescope.synth.sdf import F32, smoothstep

SLAB = 16
"""Slices rendered at once."""

N_LABELS = 10

# DESS-like relative intensities (cartilage ~0.6, fluid brightest)
I_MARROW = 0.24
I_CORTEX = 0.035
I_CARTILAGE = 0.62
I_MENISCUS = 0.05
I_FLUID = 1.0
I_TENDON = 0.03
I_MUSCLE = 0.2
I_FAT = 0.07
CORTEX_MM = 1.2


@dataclass(frozen=True)
class Slab:
    """Rendered slab: label fractions (10, n, J, K) float32 and image (n, J, K) float32."""

    i0: int
    fractions: npt.NDArray[np.float32]
    image: npt.NDArray[np.float32]


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
) -> Iterator[Slab]:
    """Yield label fractions and noiseless, bias-free image of consecutive slabs.

    ``texture``: optional :func:`marrow_texture` lattice modulating marrow intensity.
    """
    n_i = grid_shape[0]
    for i0 in range(0, n_i, SLAB):
        i1 = min(i0 + SLAB, n_i)
        lo, hi = max(i0 - 1, 0), min(i1 + 1, n_i)
        idx = np.arange(lo, hi, dtype=np.int64)
        if idx.size < 2:  # np.gradient needs two samples per axis
            idx = np.array([lo - 1, lo] if lo > 0 else [lo, lo + 1], dtype=np.int64)
        x, y, z = slab_coordinates(to_canonical, idx, grid_shape[1:])
        fr, img = _render_block(shape, x, y, z, spacing, texture)
        keep = slice(i0 - int(idx[0]), i0 - int(idx[0]) + (i1 - i0))
        yield Slab(i0, np.ascontiguousarray(fr[:, keep]), np.ascontiguousarray(img[keep]))


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


def _masked(
    fn: Callable[..., F32], mask: npt.NDArray[np.bool_], x: F32, y: F32, z: F32, fill: float
) -> F32:
    out = np.full(x.shape, np.float32(fill), dtype=np.float32)
    if mask.any():
        out[mask] = fn(x[mask], y[mask], z[mask])
    return out


def _render_block(
    shape: KneeShape,
    x: F32,
    y: F32,
    z: F32,
    spacing: tuple[float, float, float],
    texture: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    one = np.float32(1.0)
    dF, wF = _normalised_banded(banded(shape.femur_sdf, x, y, z, BAND_MM), spacing)
    dT, wT = _normalised_banded(banded(shape.tibia_sdf, x, y, z, BAND_MM), spacing)
    dP, wP = _normalised_banded(banded(shape.patella_sdf, x, y, z, BAND_MM), spacing)
    dFib, wFib = _normalised_banded(banded(shape.fibula_sdf, x, y, z, BAND_MM), spacing)

    t_max = 6.0
    tF = _masked(shape.femoral_thickness, (dF > -1.0) & (dF < t_max), x, y, z, 0.0)
    near_t = (dT > -1.0) & (dT < t_max) & (z > -12.0)
    tTm = _masked(shape.medial_tibial_thickness, near_t & (x < 0), x, y, z, 0.0)
    tTl = _masked(shape.lateral_tibial_thickness, near_t & (x >= 0), x, y, z, 0.0)
    tP = _masked(shape.patellar_thickness, (dP > -1.0) & (dP < t_max), x, y, z, 0.0)
    lateral_side = (x >= 0).astype(np.float32)
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
    for label, medial in ((8, True), (9, False)):
        side = zone & ((x < 2.0) if medial else (x > -2.0))

        def men(xx: F32, yy: F32, zz: F32, medial: bool = medial) -> F32:
            return shape.meniscus_sdf(xx, yy, zz, medial)

        m = np.maximum(_masked(men, side, x, y, z, 10.0), outside_fem)
        fr[label] = np.minimum(_ramp(m, wT), rem)
        rem -= fr[label]
    fr[0] = np.maximum(rem, 0.0)

    # --- unlabeled tissue ---------------------------------------------------------------
    o_fib = np.minimum(_ramp(dFib, wFib), fr[0])
    rem = fr[0] - o_fib
    o_lig = np.minimum(_ramp(banded(shape.cruciate_sdf, x, y, z, 2.0), wT), rem)
    rem = rem - o_lig
    w_mean = np.float32(float(np.mean(spacing)))
    joint = np.maximum(
        dF - tF, np.minimum(dT - tT, dP - tP) - np.float32(2.0 + 2.0 * shape.p.effusion)
    )
    o_fluid = np.minimum(_ramp(joint - np.float32(1.0), w_mean), rem)
    pouch = banded(shape.fluid_sdf, x, y, z, 2.0)
    o_fluid = np.maximum(o_fluid, np.minimum(_ramp(pouch, w_mean), rem))
    rem = rem - o_fluid
    tendon = banded(shape.patellar_tendon_sdf, x, y, z, 2.0)
    o_tendon = np.minimum(_ramp(tendon, w_mean), rem)
    rem = rem - o_tendon
    d_leg = banded(shape.leg_sdf, x, y, z, 10.0)
    o_leg = np.minimum(_ramp(d_leg, w_mean), rem)
    muscle = (one - smoothstep(-22.0 * s, -8.0 * s, y)) * (
        one - smoothstep(-9.0 * s, -5.0 * s, d_leg)
    )
    soft = o_leg * (muscle * np.float32(I_MUSCLE) + (one - muscle) * np.float32(I_FAT))

    marrow_gain = np.ones_like(x)
    if texture is not None:
        in_bone = (fr[1] + fr[3] + fr[6] + o_fib) > 0
        if in_bone.any():
            tex = _texture_at(texture, x[in_bone], y[in_bone], z[in_bone])
            marrow_gain[in_bone] = np.clip(1.0 + np.float32(TEXTURE_AMPLITUDE) * tex, 0.3, 2.0)

    def bone(d: F32, w: F32, o: F32) -> F32:
        marrow = np.minimum(_ramp(d + np.float32(CORTEX_MM), w), o)
        return marrow * np.float32(I_MARROW) * marrow_gain + (o - marrow) * np.float32(I_CORTEX)

    img = (
        bone(dF, wF, fr[1])
        + bone(dT, wT, fr[3])
        + bone(dP, wP, fr[6])
        + bone(dFib, wFib, o_fib)
        + (fr[2] + fr[4] + fr[5] + fr[7]) * np.float32(I_CARTILAGE)
        + (fr[8] + fr[9]) * np.float32(I_MENISCUS)
        + o_fluid * np.float32(I_FLUID)
        + (o_tendon + o_lig) * np.float32(I_TENDON)
        + soft
    )
    return fr, img.astype(np.float32)
