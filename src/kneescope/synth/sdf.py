"""Signed-distance primitives on float32 coordinate arrays (negative inside, in mm).

All functions take coordinate arrays of any (broadcastable) shape in millimetres and return a
float32 array of that shape. They are exact or close to exact distances near the surface,
which is what the partial-volume and cartilage-thickness logic in :mod:`kneescope.synth`
relies on (a renderer re-normalises by the numerical gradient anyway).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def smoothstep(edge0: float | F32, edge1: float | F32, x: F32) -> F32:
    """Cubic Hermite step: 0 below ``edge0``, 1 above ``edge1`` (edges in x's units)."""
    e0 = np.float32(edge0) if isinstance(edge0, float | int) else edge0
    e1 = np.float32(edge1) if isinstance(edge1, float | int) else edge1
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32, copy=False)


def smooth_union(a: F32, b: F32, k_mm: float) -> F32:
    """Polynomial smooth minimum of two distances with blend radius ``k_mm``."""
    if k_mm <= 0:
        return np.minimum(a, b)
    k = np.float32(k_mm)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return (b + (a - b) * h - k * h * (1.0 - h)).astype(np.float32, copy=False)


def smooth_intersection(a: F32, b: F32, k_mm: float) -> F32:
    """Polynomial smooth maximum (intersection of the two insides)."""
    return -smooth_union(-a, -b, k_mm)


def circle2d(u: F32, v: F32, cu: float, cv: float, r_mm: float) -> F32:
    """Distance to a circle of radius ``r_mm`` centred at ``(cu, cv)`` in the (u, v) plane."""
    return (
        np.sqrt((u - np.float32(cu)) ** 2 + (v - np.float32(cv)) ** 2) - np.float32(r_mm)
    ).astype(np.float32, copy=False)


def ellipse2d(u: F32, v: F32, cu: float, cv: float, au_mm: float, av_mm: float) -> F32:
    """Approximate distance to an axis-aligned ellipse (exact on the axes, good near it)."""
    pu = (u - np.float32(cu)) / np.float32(au_mm)
    pv = (v - np.float32(cv)) / np.float32(av_mm)
    k0 = np.sqrt(pu * pu + pv * pv)
    k1 = np.sqrt((pu / np.float32(au_mm)) ** 2 + (pv / np.float32(av_mm)) ** 2)
    k1 = np.maximum(k1, np.float32(1e-6))
    return (k0 * (k0 - 1.0) / k1).astype(np.float32, copy=False)


def ellipsoid(
    x: F32, y: F32, z: F32, centre: tuple[float, float, float], radii_mm: tuple[float, float, float]
) -> F32:
    """Approximate distance to an axis-aligned ellipsoid (good near the surface)."""
    px = (x - np.float32(centre[0])) / np.float32(radii_mm[0])
    py = (y - np.float32(centre[1])) / np.float32(radii_mm[1])
    pz = (z - np.float32(centre[2])) / np.float32(radii_mm[2])
    k0 = np.sqrt(px * px + py * py + pz * pz)
    k1 = np.sqrt(
        (px / np.float32(radii_mm[0])) ** 2
        + (py / np.float32(radii_mm[1])) ** 2
        + (pz / np.float32(radii_mm[2])) ** 2
    )
    k1 = np.maximum(k1, np.float32(1e-6))
    return (k0 * (k0 - 1.0) / k1).astype(np.float32, copy=False)


def capsule(
    x: F32,
    y: F32,
    z: F32,
    a: tuple[float, float, float],
    b: tuple[float, float, float],
    r_mm: float,
) -> F32:
    """Distance to the capsule of radius ``r_mm`` around the segment from ``a`` to ``b``."""
    ax, ay, az = (np.float32(c) for c in a)
    bx, by, bz = (np.float32(c) for c in b)
    dx, dy, dz = bx - ax, by - ay, bz - az
    length2 = float(dx * dx + dy * dy + dz * dz)
    h = np.clip(((x - ax) * dx + (y - ay) * dy + (z - az) * dz) / np.float32(length2), 0.0, 1.0)
    ex, ey, ez = x - ax - h * dx, y - ay - h * dy, z - az - h * dz
    return (np.sqrt(ex * ex + ey * ey + ez * ez) - np.float32(r_mm)).astype(np.float32, copy=False)


def extrude_x(profile: F32, x: F32, x_lo: float, x_hi: float, round_mm: float) -> F32:
    """Extrude a 2D (y, z) profile distance along x over ``[x_lo, x_hi]`` with rounded edges.

    ``profile`` is the 2D distance already evaluated at the points; the result is the 3D
    distance of the extruded solid whose edges are rounded by ``round_mm``.
    """
    centre = np.float32(0.5 * (x_lo + x_hi))
    half = np.float32(0.5 * (x_hi - x_lo) - round_mm)
    r = np.float32(round_mm)
    wx = np.abs(x - centre) - half
    wy = profile + r
    outside = np.sqrt(np.maximum(wx, 0.0) ** 2 + np.maximum(wy, 0.0) ** 2)
    inside = np.minimum(np.maximum(wx, wy), 0.0)
    return (outside + inside - r).astype(np.float32, copy=False)
