"""Synthetic full-leg standing radiographs (both legs, hip to ankle) with truth.

A 2D :class:`~kneescope.core.Volume` ``array[i=row, j=column]`` uint16, bone bright, rows to
the patient's feet, columns to the patient's Left (~1200 x 3600 px at 0.3 mm). Both legs are
drawn from analytic cylinders and spheres; truth: hip, knee and ankle centres (pixel
row/column) and the HKA angle (180 neutral, < 180 varus).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.synth.radiograph import DISPLAY_MAX, MU_BONE, MU_SOFT, radiograph_affine

LEG_PIXEL_MM = 0.3


@dataclass(frozen=True)
class LegXrayTruth:
    """Landmarks (mm in the image plane and pixel row/column) and HKA of one leg."""

    side: str
    hip_rc: tuple[float, float]
    knee_rc: tuple[float, float]
    ankle_rc: tuple[float, float]
    hka_deg: float


def _disk_path(d: npt.NDArray[np.float32], r: float) -> npt.NDArray[np.float32]:
    return 2.0 * np.sqrt(np.clip(r * r - d * d, 0.0, None))


def _segment_distance(
    x: npt.NDArray[np.float32],
    z: npt.NDArray[np.float32],
    a: tuple[float, float],
    b: tuple[float, float],
) -> npt.NDArray[np.float32]:
    dx, dz = b[0] - a[0], b[1] - a[1]
    h = np.clip(((x - a[0]) * dx + (z - a[1]) * dz) / (dx * dx + dz * dz), 0.0, 1.0)
    return np.sqrt((x - a[0] - h * dx) ** 2 + (z - a[1] - h * dz) ** 2)


class _Canvas:
    """Projected path lengths (mm) on a pixel grid; primitives drawn inside their boxes."""

    def __init__(self, top_z: float, left_x: float, shape: tuple[int, int], px: float) -> None:
        self.top_z, self.left_x, self.px = top_z, left_x, px
        self.z = (top_z - np.arange(shape[0], dtype=np.float32) * px).astype(np.float32)
        self.x = (left_x - np.arange(shape[1], dtype=np.float32) * px).astype(np.float32)
        self.path = np.zeros(shape, dtype=np.float32)
        self.soft = np.zeros(shape, dtype=np.float32)

    def _window(
        self, xs: tuple[float, float], zs: tuple[float, float]
    ) -> tuple[tuple[slice, slice], npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        r0 = max(int((self.top_z - zs[1]) / self.px) - 1, 0)
        r1 = min(int((self.top_z - zs[0]) / self.px) + 2, self.z.size)
        c0 = max(int((self.left_x - xs[1]) / self.px) - 1, 0)
        c1 = min(int((self.left_x - xs[0]) / self.px) + 2, self.x.size)
        if r0 >= r1 or c0 >= c1:
            return None
        zz, xx = np.meshgrid(self.z[r0:r1], self.x[c0:c1], indexing="ij")
        return (slice(r0, r1), slice(c0, c1)), xx, zz

    def ball(self, c: tuple[float, float], r: float, weight: float = 1.0, sx: float = 1.0) -> None:
        win = self._window((c[0] - r * sx, c[0] + r * sx), (c[1] - r, c[1] + r))
        if win is not None:
            box, xx, zz = win
            d = np.sqrt(((xx - c[0]) / sx) ** 2 + (zz - c[1]) ** 2)
            self.path[box] += weight * _disk_path(d, r)

    def rod(
        self, a: tuple[float, float], b: tuple[float, float], r: float, *, soft: bool = False
    ) -> None:
        xs = (min(a[0], b[0]) - r, max(a[0], b[0]) + r)
        zs = (min(a[1], b[1]) - r, max(a[1], b[1]) + r)
        win = self._window(xs, zs)
        if win is None:
            return
        box, xx, zz = win
        p = _disk_path(_segment_distance(xx, zz, a, b), r)
        if soft:
            self.soft[box] = np.maximum(self.soft[box], p)
        else:
            self.path[box] += p


def render_full_leg(
    legs: dict[str, tuple[float, float]], *, seed: int
) -> tuple[Volume, list[LegXrayTruth]]:
    """Full-leg standing radiograph of both legs.

    Args:
        legs: side -> (HKA angle in degrees, size scale ~0.9-1.1).
        seed: noise seed.

    Returns:
        (uint16 2D Volume, 3600 x 1200 at :data:`LEG_PIXEL_MM`, truth per leg).
    """
    px = LEG_PIXEL_MM
    top_z, left_x = 120.0, 180.0  # mm: hip centres at z = 0, x = +-90
    cv = _Canvas(top_z, left_x, (3600, 1200), px)
    truths = []
    # pelvis: two iliac wings and a sacrum-like block (projected thickness, not anatomy)
    for sx in (-1.0, 1.0):
        cv.ball((sx * 95.0, 70.0), 60.0, weight=0.35, sx=1.4)
    cv.ball((0.0, 80.0), 40.0, weight=0.6, sx=1.2)
    for side, (hka, scale) in legs.items():
        lat = 1.0 if side == "right" else -1.0  # +x is the right leg's lateral side
        hip = (lat * 90.0, 0.0)
        a = np.deg2rad(3.0)
        b = a + np.deg2rad(180.0 - hka)
        lf, lt = 440.0 * scale, 380.0 * scale
        knee = (hip[0] - lat * lf * np.sin(a), hip[1] - lf * np.cos(a))
        ankle = (knee[0] - lat * lt * np.sin(b), knee[1] - lt * np.cos(b))
        s = scale
        # femur: head, neck, shaft, condyles
        cv.ball(hip, 23.0 * s)
        cv.rod(hip, (hip[0] + lat * 50.0 * s, hip[1] - 40.0 * s), 15.0 * s)
        cv.rod(
            (hip[0] + lat * 38.0 * s, hip[1] - 60.0 * s), (knee[0], knee[1] + 45.0 * s), 14.0 * s
        )
        for dx in (-20.0, 20.0):
            cv.ball((knee[0] + dx * s, knee[1] + 22.0 * s), 20.0 * s, weight=0.9)
        # tibia: plateau, shaft, distal end; fibula; talus
        cv.ball((knee[0], knee[1] - 22.0 * s), 22.0 * s, weight=0.9, sx=1.7)
        cv.rod((knee[0], knee[1] - 40.0 * s), (ankle[0], ankle[1] + 30.0), 13.0 * s)
        cv.ball((ankle[0], ankle[1] + 12.0), 18.0 * s, sx=1.3)
        fib_top = (knee[0] + lat * 32.0 * s, knee[1] - 30.0 * s)
        cv.rod(fib_top, (ankle[0] + lat * 25.0 * s, ankle[1]), 6.0 * s)
        cv.ball((ankle[0], ankle[1] - 15.0), 16.0 * s, sx=1.5)
        # soft tissue: thigh and calf
        cv.rod((hip[0] + lat * 10.0, hip[1] + 30.0), knee, 80.0 * s, soft=True)
        cv.rod(knee, ankle, 55.0 * s, soft=True)

        def rc(p: tuple[float, float]) -> tuple[float, float]:
            return (float((top_z - p[1]) / px), float((left_x - p[0]) / px))

        truths.append(LegXrayTruth(side, rc(hip), rc(knee), rc(ankle), float(hka)))
    rng = np.random.default_rng(seed)
    atten = MU_BONE * 0.8 * cv.path + MU_SOFT * 0.7 * cv.soft
    signal = DISPLAY_MAX * (1.0 - np.exp(-atten)) + 150.0
    signal += rng.standard_normal(signal.shape, dtype=np.float32) * np.sqrt(signal) * 0.8
    pixels = np.clip(np.rint(signal), 0, 4095).astype(np.uint16)
    affine = radiograph_affine((left_x, 20.0, -450.0 + top_z + 480.0), px)
    return Volume(pixels, affine, {"kind": "full_leg", "synthetic": True}), truths


def hka_from_landmarks(
    hip: tuple[float, float], knee: tuple[float, float], ankle: tuple[float, float], side: str
) -> float:
    """HKA (deg) from (row, col) pixel landmarks of one leg: 180 - varus angle.

    The varus angle is positive when the knee lies lateral to the hip-ankle line.
    """
    h, k, a = (np.asarray(p, dtype=np.float64) for p in (hip, knee, ankle))
    f, t = k - h, a - k
    angle = np.degrees(np.arccos(np.clip(f @ t / (np.linalg.norm(f) * np.linalg.norm(t)), -1, 1)))
    # columns increase to the patient's left: for the right leg lateral = smaller column
    lateral_sign = -1.0 if side == "right" else 1.0
    line = a - h
    cross = line[0] * (k[1] - h[1]) - line[1] * (k[0] - h[0])
    # cross > 0 means the knee lies at larger column than the hip-ankle line (rows downward)
    knee_lateral = np.sign(cross) * lateral_sign > 0
    return float(180.0 - angle if knee_lateral else 180.0 + angle)
