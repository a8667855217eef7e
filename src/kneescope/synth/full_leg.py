"""Synthetic full-leg standing radiographs (both legs, pelvis to feet) with exact truth.

A film is a 2D :class:`~kneescope.core.Volume` ``array[i=row, j=column]`` uint16, bone
bright, rows to the patient's feet, columns to the patient's Left (the patient's right leg on
the viewer's left). Default 3600 x 1200 pixels at 0.3 mm; :func:`full_leg_films` also draws
other film sizes and spacings (e.g. 4000 x 1000 at 0.36 mm).

Anatomy (projected path lengths through analytic solids, in the patient's coronal plane,
``x`` mm to the patient's right, ``z`` mm up): pelvis (iliac wings, sacrum, acetabular roofs,
obturator rings), femur (head, neck, greater and lesser trochanters, a tapered shaft with a
cortical shell, metaphyseal flare, two condyles with the notch between them), patella,
tibia (plateau, spines, shaft with cortex, plafond, medial malleolus), fibula (head, shaft,
lateral malleolus), talus and the foot; soft tissue (pelvis, thighs, calves) of varying
thickness. Film variation (all from the seed): magnification, in-plane rotation, position,
exposure, contrast (gamma), noise, a heel-effect gradient, stitching seams between cassettes,
collimation and lead L/R markers.

Truth per leg (:class:`LegXrayTruth`), exact by construction, in film pixels (row, column;
pixel (0, 0) is the centre of the first pixel) and mm (pixel index x spacing):

- hip: the centre of the femoral head (a sphere);
- knee: the centre of the knee joint: on the column midway between the femoral condyles
  (the intercondylar notch and the tibial spines), halfway between the tibial plateau line
  and the line through the two condyles' lowest points (lines perpendicular to the tibial
  axis);
- ankle: the centre of the ankle joint: midway between the malleoli on the tibial axis,
  halfway between the tibial plafond and the top of the talar dome;
- HKA: the angle between the femoral mechanical axis (hip -> knee) and the tibial
  mechanical axis (knee -> ankle), as 180 - deviation, ``< 180`` varus (the knee lies
  lateral to the hip-ankle line), ``> 180`` valgus. In-plane rotation and magnification are
  similarity transforms, so the HKA of the film is the HKA of the legs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.synth.radiograph import radiograph_affine

LEG_PIXEL_MM = 0.3
"""Pixel spacing (mm) of the default 3600 x 1200 film."""

FILM_LAYOUTS: tuple[tuple[int, int, float], ...] = (
    (3600, 1200, 0.3),
    (4000, 1000, 0.36),
    (3300, 1100, 0.33),
    (2800, 960, 0.4),
)
"""(rows, columns, pixel mm) of the film formats :func:`full_leg_films` draws."""

_MU_BONE = 0.011  # 1/mm, path through bone (cortex-weighted)
_MU_SOFT = 0.0045  # 1/mm
_DISPLAY_MAX = 3800.0
_FEMUR_MM = 440.0  # hip centre to knee centre at scale 1
_TIBIA_MM = 385.0  # knee centre to ankle centre at scale 1

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LegXrayTruth:
    """Landmarks of one leg in film pixels (row, column) and its HKA angle.

    Attributes:
        side: ``"right"`` or ``"left"`` (the patient's).
        hip_rc, knee_rc, ankle_rc: femoral head centre, knee centre and ankle centre as
            (row, column) float pixel positions (definitions in the module docstring).
        hka_deg: hip-knee-ankle angle, degrees, 180 neutral, ``< 180`` varus.
        pixel_mm: the film's pixel spacing (rows and columns), mm.
    """

    side: str
    hip_rc: tuple[float, float]
    knee_rc: tuple[float, float]
    ankle_rc: tuple[float, float]
    hka_deg: float
    pixel_mm: float = LEG_PIXEL_MM

    def landmarks_mm(self) -> dict[str, tuple[float, float]]:
        """``hip``, ``knee``, ``ankle`` as (row, column) mm from the centre of pixel (0, 0)."""
        px = self.pixel_mm
        return {
            name: (rc[0] * px, rc[1] * px)
            for name, rc in (("hip", self.hip_rc), ("knee", self.knee_rc), ("ankle", self.ankle_rc))
        }


@dataclass(frozen=True)
class FullLegFilm:
    """A rendered film with its truth and the settings it was drawn with.

    Attributes:
        film: uint16 2D Volume (rows, columns), spacing ``pixel_mm``.
        legs: truth per leg, right first.
        pixel_mm: pixel spacing, mm.
        rotation_deg: in-plane rotation of the patient on the film, degrees (positive turns
            the downward row direction towards increasing columns).
        magnification: film mm per patient mm.
        seed: the seed it was rendered from.
    """

    film: Volume
    legs: list[LegXrayTruth]
    pixel_mm: float
    rotation_deg: float
    magnification: float
    seed: int
    extra: dict[str, float] = field(default_factory=dict)


def _chord(r: npt.NDArray[np.floating[Any]] | float, d2: npt.NDArray[np.floating[Any]]) -> F32:
    """Length of a chord at squared distance ``d2`` from the axis of a solid of radius ``r``."""
    rr = np.asarray(r, dtype=np.float32)
    return (2.0 * np.sqrt(np.clip(rr * rr - d2, 0.0, None))).astype(np.float32)


class _Canvas:
    """Projected path lengths (mm) on the film's pixel grid.

    The patient plane (x right, z up, mm) maps to film mm by a similarity transform:
    ``(row_mm, col_mm) = t + m * R(theta) @ (-z, -x)``; primitives are evaluated only in the
    pixel box their bounding box maps to.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        px: float,
        *,
        t_mm: tuple[float, float],
        magnification: float,
        rotation_deg: float,
    ) -> None:
        self.shape, self.px = shape, px
        self.t = np.asarray(t_mm, dtype=np.float64)
        self.m = magnification
        th = math.radians(rotation_deg)
        self.rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        self.bone = np.zeros(shape, dtype=np.float32)
        self.soft = np.zeros(shape, dtype=np.float32)
        self.metal = np.zeros(shape, dtype=np.float32)

    def to_film_mm(self, x: float, z: float) -> tuple[float, float]:
        """Film (row, column) mm of the patient point (x, z)."""
        rc = self.t + self.m * (self.rot @ np.array([-z, -x]))
        return float(rc[0]), float(rc[1])

    def to_patient(self, row_mm: float, col_mm: float) -> tuple[float, float]:
        """Patient (x, z) of the film point (row, column) mm."""
        wv = self.rot.T @ ((np.array([row_mm, col_mm]) - self.t) / self.m)
        return float(-wv[1]), float(-wv[0])

    def window(
        self, xs: tuple[float, float], zs: tuple[float, float]
    ) -> tuple[tuple[slice, slice], F32, F32] | None:
        corners = [self.to_film_mm(x, z) for x in xs for z in zs]
        rows = [c[0] / self.px for c in corners]
        cols = [c[1] / self.px for c in corners]
        r0, r1 = max(int(min(rows)) - 1, 0), min(int(max(rows)) + 2, self.shape[0])
        c0, c1 = max(int(min(cols)) - 1, 0), min(int(max(cols)) + 2, self.shape[1])
        if r0 >= r1 or c0 >= c1:
            return None
        rr = (np.arange(r0, r1, dtype=np.float64) * self.px - self.t[0]) / self.m
        cc = (np.arange(c0, c1, dtype=np.float64) * self.px - self.t[1]) / self.m
        w = self.rot[0, 0] * rr[:, None] + self.rot[1, 0] * cc[None, :]
        v = self.rot[0, 1] * rr[:, None] + self.rot[1, 1] * cc[None, :]
        return (slice(r0, r1), slice(c0, c1)), (-v).astype(np.float32), (-w).astype(np.float32)

    def _add(self, layer: str, box: tuple[slice, slice], path: F32) -> None:
        """Bone and metal add up along the beam; soft tissue is one body (the union)."""
        if layer == "soft":
            np.maximum(self.soft[box], path, out=self.soft[box])
        else:
            target = self.bone if layer == "bone" else self.metal
            target[box] += path

    def ellipse(
        self,
        c: tuple[float, float],
        ax: float,
        az: float,
        *,
        angle: float = 0.0,
        weight: float = 1.0,
        cortex: float = 0.0,
        marrow: float = 0.45,
        power: float = 2.0,
        depth: float = 1.0,
        layer: str = "bone",
        above: float | None = None,
    ) -> None:
        """A (super-)ellipsoid: semi-axes ``ax`` (along ``angle`` from x) and ``az``, depth
        semi-axis ``depth * min(ax, az)``; with ``cortex`` a shell of that thickness over
        marrow of relative density ``marrow``; ``above``: keep only z' > above (local)."""
        r = max(ax, az)
        win = self.window((c[0] - r, c[0] + r), (c[1] - r, c[1] + r))
        if win is None:
            return
        box, xx, zz = win
        ca, sa = math.cos(angle), math.sin(angle)
        lx = (xx - c[0]) * ca + (zz - c[1]) * sa
        lz = -(xx - c[0]) * sa + (zz - c[1]) * ca
        depth_mm = depth * min(ax, az)

        def solid(a: float, b: float) -> F32:
            q = np.abs(lx / a) ** power + np.abs(lz / b) ** power
            q = q ** (2.0 / power) if power != 2.0 else q
            return _chord(depth_mm * (a / ax), q * (depth_mm * a / ax) ** 2)

        path = solid(ax, az)
        if cortex > 0.0:
            inner = solid(max(ax - cortex, 0.5), max(az - cortex, 0.5))
            path = path - (1.0 - marrow) * inner
        if above is not None:
            path = path * (lz > above)
        self._add(layer, box, weight * path)

    def capsule(
        self,
        a: tuple[float, float],
        b: tuple[float, float],
        r0: float,
        r1: float | None = None,
        *,
        weight: float = 1.0,
        cortex: float = 0.0,
        marrow: float = 0.45,
        layer: str = "bone",
    ) -> None:
        """A tapered rod from ``a`` (radius ``r0``) to ``b`` (radius ``r1``)."""
        r1 = r0 if r1 is None else r1
        r = max(r0, r1)
        xs = (min(a[0], b[0]) - r, max(a[0], b[0]) + r)
        zs = (min(a[1], b[1]) - r, max(a[1], b[1]) + r)
        win = self.window(xs, zs)
        if win is None:
            return
        box, xx, zz = win
        dx, dz = b[0] - a[0], b[1] - a[1]
        h = np.clip(((xx - a[0]) * dx + (zz - a[1]) * dz) / (dx * dx + dz * dz), 0.0, 1.0)
        d2 = (xx - a[0] - h * dx) ** 2 + (zz - a[1] - h * dz) ** 2
        rad = (r0 + (r1 - r0) * h).astype(np.float32)
        path = _chord(rad, d2)
        if cortex > 0.0:
            path = path - (1.0 - marrow) * _chord(np.clip(rad - cortex, 0.3, None), d2)
        self._add(layer, box, weight * path)


def _unit(v: tuple[float, float]) -> tuple[float, float]:
    n = math.hypot(*v)
    return (v[0] / n, v[1] / n)


def _at(
    o: tuple[float, float], up: tuple[float, float], out: tuple[float, float], u: float, s: float
) -> tuple[float, float]:
    """The point ``u`` mm along ``up`` and ``s`` mm along ``out`` from ``o``."""
    return (o[0] + u * up[0] + s * out[0], o[1] + u * up[1] + s * out[1])


@dataclass(frozen=True)
class _Leg:
    side: str
    hip: tuple[float, float]
    knee: tuple[float, float]
    ankle: tuple[float, float]
    hka: float


def _leg_geometry(side: str, hka: float, scale: float, hip_half: float, tilt: float) -> _Leg:
    """Hip, knee and ankle centres (patient mm) of a standing leg with the given HKA.

    The weight-bearing line (hip centre to ankle centre) runs ``tilt`` degrees medially from
    the vertical, as in standing; the knee lies off it, lateral when varus (``hka < 180``),
    medial when valgus, so that the angle at the knee is the HKA (the law of sines in the
    hip-knee-ankle triangle). So the ankles stay apart whatever the two legs' HKA.
    """
    lat = 1.0 if side == "right" else -1.0
    hip = (lat * hip_half, 0.0)
    t = math.radians(tilt)
    lf, lt = _FEMUR_MM * scale, _TIBIA_MM * scale
    dev = math.radians(abs(180.0 - hka))
    span = math.sqrt(lf * lf + lt * lt + 2.0 * lf * lt * math.cos(dev))  # |hip - ankle|
    alpha = math.asin(min(1.0, lt * math.sin(dev) / span))  # angle at the hip
    u = (-lat * math.sin(t), -math.cos(t))  # down the weight-bearing line (medially)
    n = (lat * math.cos(t), -math.sin(t))  # perpendicular to it, lateral
    off = 1.0 if hka < 180.0 else -1.0  # varus: the knee lateral of the line
    ca, sa = math.cos(alpha), off * math.sin(alpha)
    knee = (hip[0] + lf * (ca * u[0] + sa * n[0]), hip[1] + lf * (ca * u[1] + sa * n[1]))
    ankle = (hip[0] + span * u[0], hip[1] + span * u[1])
    return _Leg(side, hip, knee, ankle, hka)


def _draw_pelvis(
    cv: _Canvas, hips: list[tuple[float, float]], s: float, rng: np.random.Generator
) -> None:
    zc = hips[0][1]
    half = abs(hips[0][0])
    for lat in (-1.0, 1.0):
        cv.ellipse(
            (lat * (half + 8.0 * s), zc + 95.0 * s),
            62.0 * s,
            78.0 * s,
            angle=lat * 0.35,
            weight=0.55,
            cortex=3.0,
            marrow=0.35,
            depth=0.18,
        )
        cv.ellipse(
            (lat * 48.0 * s, zc - 38.0 * s),
            26.0 * s,
            30.0 * s,
            weight=0.8,
            cortex=5.0,
            marrow=0.0,
            depth=0.35,
        )  # obturator ring
        cv.capsule(
            (lat * 14.0 * s, zc - 10.0 * s), (lat * 14.0 * s, zc - 55.0 * s), 9.0 * s, weight=0.6
        )  # pubic body / symphysis
    cv.ellipse(
        (0.0, zc + 95.0 * s),
        42.0 * s,
        70.0 * s,
        weight=0.55,
        cortex=4.0,
        marrow=0.5,
        power=2.6,
        depth=0.6,
    )  # sacrum
    cv.capsule((0.0, zc + 170.0 * s), (0.0, zc + 230.0 * s), 24.0 * s, weight=0.6, cortex=3.0)
    del rng


def _draw_leg(
    cv: _Canvas, leg: _Leg, s: float, rng: np.random.Generator, js: dict[str, float]
) -> None:
    lat = 1.0 if leg.side == "right" else -1.0
    hip, knee, ankle = leg.hip, leg.knee, leg.ankle
    up_f = _unit((hip[0] - knee[0], hip[1] - knee[1]))  # femoral mechanical axis, up
    up_t = _unit((knee[0] - ankle[0], knee[1] - ankle[1]))  # tibial axis, up
    out_t = (lat * up_t[1], -lat * up_t[0])  # perpendicular, lateral
    out_f = (lat * up_f[1], -lat * up_f[0])
    # femoral head and acetabulum
    rh = rng.uniform(21.0, 25.0) * s
    cv.ellipse(hip, rh, rh, weight=1.0, cortex=2.0, marrow=0.6)
    roof = rh + js["hip"]
    cv.ellipse(
        hip,
        roof + 6.0 * s,
        roof + 6.0 * s,
        weight=0.9,
        cortex=6.0 * s,
        marrow=0.0,
        above=-0.15 * roof,
        depth=0.5,
    )
    # neck, trochanters, shaft
    neck_base = _at(hip, up_f, out_f, -38.0 * s, 42.0 * s)
    cv.capsule(hip, neck_base, 15.0 * s, 17.0 * s, weight=0.9, cortex=3.0)
    cv.ellipse(
        _at(hip, up_f, out_f, -8.0 * s, 62.0 * s),
        17.0 * s,
        24.0 * s,
        weight=0.85,
        cortex=3.0,
        marrow=0.5,
    )
    cv.ellipse(_at(hip, up_f, out_f, -72.0 * s, 18.0 * s), 8.0 * s, 11.0 * s, weight=0.8)
    shaft_top = _at(hip, up_f, out_f, -60.0 * s, 40.0 * s)
    dist = _at(knee, up_t, out_t, 75.0 * s, 0.0)
    cv.capsule(shaft_top, dist, 17.0 * s, 14.5 * s, weight=1.0, cortex=5.5 * s, marrow=0.3)
    cv.capsule(
        dist,
        _at(knee, up_t, out_t, 30.0 * s, 0.0),
        14.5 * s,
        36.0 * s,
        weight=0.9,
        cortex=2.5,
        marrow=0.55,
    )
    # condyles: their lowest points at the joint line + the compartment's joint space
    jm, jl = js["medial"], js["lateral"]
    mean = 0.5 * (jm + jl)
    for sign, width in ((-1.0, jm), (1.0, jl)):
        rc_z = rng.uniform(15.0, 19.0) * s
        centre = _at(knee, up_t, out_t, -0.5 * mean + width + rc_z, sign * 19.0 * s)
        cv.ellipse(centre, 20.0 * s, rc_z, weight=0.95, cortex=2.0, marrow=0.55, power=2.3)
    cv.ellipse(
        _at(knee, up_t, out_t, 32.0 * s, 0.0),
        22.0 * s,
        26.0 * s,
        weight=0.35,
        cortex=3.0,
        marrow=0.6,
    )  # patella, seen through the femur
    # tibia: plateau (flat top on the joint line - mean/2), spines, shaft, plafond, malleolus
    plateau_top = -0.5 * mean
    cv.ellipse(
        _at(knee, up_t, out_t, plateau_top - 15.0 * s, 0.0),
        39.0 * s,
        15.0 * s,
        weight=0.9,
        cortex=2.0,
        marrow=0.55,
        power=3.5,
    )
    for sign in (-1.0, 1.0):
        cv.ellipse(
            _at(knee, up_t, out_t, plateau_top, sign * 5.0 * s), 4.0 * s, 5.0 * s, weight=0.9
        )
    shaft_top_t = _at(knee, up_t, out_t, plateau_top - 28.0 * s, 0.0)
    plafond = 0.5 * js["ankle"]
    shaft_low = _at(ankle, up_t, out_t, plafond + 48.0 * s, 0.0)
    cv.capsule(
        shaft_top_t,
        _at(knee, up_t, out_t, plateau_top - 80.0 * s, 0.0),
        32.0 * s,
        15.0 * s,
        weight=0.9,
        cortex=2.5,
        marrow=0.5,
    )
    cv.capsule(
        _at(knee, up_t, out_t, plateau_top - 80.0 * s, 0.0),
        shaft_low,
        15.0 * s,
        13.0 * s,
        weight=1.0,
        cortex=5.0 * s,
        marrow=0.3,
    )
    cv.ellipse(
        _at(ankle, up_t, out_t, plafond + 17.0 * s, 0.0),
        23.0 * s,
        17.0 * s,
        weight=0.9,
        cortex=2.0,
        marrow=0.55,
        power=3.0,
    )
    cv.capsule(
        _at(ankle, up_t, out_t, plafond + 8.0 * s, -19.0 * s),
        _at(ankle, up_t, out_t, -12.0 * s, -21.0 * s),
        6.5 * s,
        5.0 * s,
        weight=0.9,
    )
    # fibula
    head = _at(knee, up_t, out_t, plateau_top - 30.0 * s, 31.0 * s)
    cv.ellipse(head, 10.0 * s, 12.0 * s, weight=0.85, cortex=2.0, marrow=0.5)
    mall = _at(ankle, up_t, out_t, -14.0 * s, 25.0 * s)
    cv.capsule(
        head,
        _at(ankle, up_t, out_t, 40.0 * s, 22.0 * s),
        6.0 * s,
        5.0 * s,
        weight=0.9,
        cortex=2.0,
        marrow=0.4,
    )
    cv.capsule(_at(ankle, up_t, out_t, 40.0 * s, 22.0 * s), mall, 5.0 * s, 8.0 * s, weight=0.9)
    # talus and foot
    cv.ellipse(
        _at(ankle, up_t, out_t, -plafond - 13.0 * s, 0.0),
        19.0 * s,
        13.0 * s,
        weight=0.9,
        cortex=2.0,
        marrow=0.6,
        power=2.6,
    )
    cv.ellipse(
        _at(ankle, up_t, out_t, -52.0 * s, lat * 0.0),
        34.0 * s,
        24.0 * s,
        weight=0.55,
        marrow=0.7,
        cortex=3.0,
    )
    cv.ellipse(_at(ankle, up_t, out_t, -85.0 * s, -8.0 * s), 40.0 * s, 18.0 * s, weight=0.45)


def _draw_soft(cv: _Canvas, legs: list[_Leg], s: float, bulk: float) -> None:
    zc = legs[0].hip[1]
    cv.ellipse(
        (0.0, zc + 40.0 * s),
        175.0 * s * bulk,
        150.0 * s,
        weight=1.0,
        layer="soft",
        depth=0.55 * bulk,
    )
    for leg in legs:
        lat = 1.0 if leg.side == "right" else -1.0
        top = (leg.hip[0] + lat * 15.0 * s, leg.hip[1] - 20.0 * s)
        cv.capsule(top, leg.knee, 85.0 * s * bulk, 52.0 * s * bulk, layer="soft")
        calf = _at(
            leg.knee,
            _unit((leg.knee[0] - leg.ankle[0], leg.knee[1] - leg.ankle[1])),
            (0.0, 0.0),
            -110.0 * s,
            0.0,
        )
        cv.capsule(leg.knee, calf, 52.0 * s * bulk, 58.0 * s * bulk, layer="soft")
        cv.capsule(calf, leg.ankle, 58.0 * s * bulk, 34.0 * s, layer="soft")
        cv.ellipse((leg.ankle[0], leg.ankle[1] - 60.0 * s), 48.0 * s, 60.0 * s, layer="soft")


_LETTERS: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]] = {
    # strokes in a 0..1 (x right on the viewer's side, y down) letter box
    "R": [
        ((0, 0), (0, 1)),
        ((0, 0), (0.7, 0)),
        ((0.7, 0), (0.85, 0.2)),
        ((0.85, 0.2), (0.7, 0.45)),
        ((0.7, 0.45), (0, 0.45)),
        ((0.3, 0.45), (0.85, 1)),
    ],
    "L": [((0, 0), (0, 1)), ((0, 1), (0.8, 1))],
}


def _draw_marker(cv: _Canvas, letter: str, row_mm: float, col_mm: float, size_mm: float) -> None:
    """A lead letter, upright on the film, its box's top-left at film (row, column) mm."""
    for (x0, y0), (x1, y1) in _LETTERS[letter]:
        a = cv.to_patient(row_mm + y0 * size_mm, col_mm + x0 * size_mm)
        b = cv.to_patient(row_mm + y1 * size_mm, col_mm + x1 * size_mm)
        cv.capsule(a, b, 0.09 * size_mm / cv.m, layer="metal")


def render_full_leg(
    legs: dict[str, tuple[float, float]],
    *,
    seed: int,
    shape: tuple[int, int] = (3600, 1200),
    pixel_mm: float = LEG_PIXEL_MM,
    vary: bool = True,
) -> tuple[Volume, list[LegXrayTruth]]:
    """Full-leg standing radiograph of both legs.

    Args:
        legs: side -> (HKA angle in degrees, size scale ~0.88-1.12); ``"right"`` and/or
            ``"left"``.
        seed: seeds the anatomy details and the film variation.
        shape: film size (rows, columns).
        pixel_mm: pixel spacing, mm.
        vary: draw magnification, rotation, position, exposure, seams, collimation and
            markers from the seed (``False``: a plain centred film).

    Returns:
        (uint16 2D Volume of ``shape`` at ``pixel_mm``, truth per leg, right first).
    """
    return render_full_leg_film(legs, seed=seed, shape=shape, pixel_mm=pixel_mm, vary=vary)[:2]


def render_full_leg_film(
    legs: dict[str, tuple[float, float]],
    *,
    seed: int,
    shape: tuple[int, int] = (3600, 1200),
    pixel_mm: float = LEG_PIXEL_MM,
    vary: bool = True,
) -> tuple[Volume, list[LegXrayTruth], dict[str, float]]:
    """:func:`render_full_leg` with the film settings drawn (rotation, magnification, ...)."""
    if not legs or set(legs) - {"right", "left"}:
        raise ValueError(f"legs must be 'right' and/or 'left', found {sorted(legs)}")
    rng = np.random.default_rng(seed)
    rows, cols = shape
    px = float(pixel_mm)
    height_mm = rows * px
    scale = float(np.mean([sc for _, sc in legs.values()]))
    leg_mm = (_FEMUR_MM + _TIBIA_MM) * scale
    # margins: hip centre at least 110 mm below the top, ankle 75 mm above the bottom
    room = height_mm - 185.0
    mag_max = max(room / leg_mm, 0.5)
    # the film's draws come first and always, so the anatomy of a seed is the same with and
    # without the film variation
    u_mag, u_rot, u_row, u_col = rng.uniform(size=4)
    mag = float(min(1.0 + 0.12 * u_mag, mag_max)) if vary else min(1.05, mag_max)
    rot = float(-2.5 + 5.0 * u_rot) if vary else 0.0
    slack = max(height_mm - 185.0 - leg_mm * mag, 0.0)
    hip_row = 110.0 + (0.2 + 0.6 * u_row if vary else 0.5) * slack
    col_c = 0.5 * (cols - 1) * px + (-12.0 + 24.0 * u_col if vary else 0.0)
    cv = _Canvas(shape, px, t_mm=(hip_row, col_c), magnification=mag, rotation_deg=rot)
    hip_half = rng.uniform(82.0, 96.0) * scale
    tilt = rng.uniform(1.5, 3.5)
    geo = [
        _leg_geometry(side, legs[side][0], legs[side][1], hip_half, tilt)
        for side in ("right", "left")
        if side in legs
    ]
    _draw_pelvis(cv, [g.hip for g in geo], scale, rng)
    for leg in geo:
        js = {
            "hip": rng.uniform(3.0, 5.5),
            "medial": rng.uniform(2.0, 6.0),
            "lateral": rng.uniform(3.5, 7.0),
            "ankle": rng.uniform(2.5, 4.0),
        }
        _draw_leg(cv, leg, legs[leg.side][1], rng, js)
    bulk = float(rng.uniform(0.8, 1.35)) if vary else 1.0
    _draw_soft(cv, geo, scale, bulk)
    extra = {"bulk": bulk, "hip_half_mm": hip_half}
    if vary:
        size = rng.uniform(14.0, 22.0)
        top = rng.uniform(15.0, 60.0)
        _draw_marker(cv, "R", top, rng.uniform(10.0, 40.0), size)
        _draw_marker(cv, "L", top, (cols - 1) * px - rng.uniform(25.0, 55.0), size)
    pixels = _expose(cv, rng, vary)
    del cv
    truths = []
    for leg in geo:
        canvas_map = _Canvas(shape, px, t_mm=(hip_row, col_c), magnification=mag, rotation_deg=rot)

        def rc(p: tuple[float, float], m: _Canvas = canvas_map) -> tuple[float, float]:
            r_mm, c_mm = m.to_film_mm(*p)
            return (r_mm / px, c_mm / px)

        truths.append(
            LegXrayTruth(leg.side, rc(leg.hip), rc(leg.knee), rc(leg.ankle), float(leg.hka), px)
        )
    affine = radiograph_affine((0.5 * (cols - 1) * px, 20.0, 150.0), px)
    film = Volume(pixels, affine, {"kind": "full_leg", "synthetic": True})
    return film, truths, {"rotation_deg": rot, "magnification": mag, **extra}


def _expose(cv: _Canvas, rng: np.random.Generator, vary: bool) -> npt.NDArray[np.uint16]:
    """Beer-Lambert exposure, contrast, heel effect, seams, noise, collimation -> uint16."""
    rows, cols = cv.shape
    e = rng.uniform(0.8, 1.25) if vary else 1.0
    atten = cv.bone
    atten *= _MU_BONE * e
    atten += (_MU_SOFT * e) * cv.soft
    atten += 0.08 * cv.metal
    signal = -np.expm1(-atten)  # 0..1, in place below
    del atten
    gamma = rng.uniform(0.75, 1.3) if vary else 1.0
    if gamma != 1.0:
        np.power(signal, gamma, out=signal)
    gain = _DISPLAY_MAX * (rng.uniform(0.75, 1.05) if vary else 1.0)
    heel = 1.0 + (rng.uniform(-0.12, 0.12) if vary else 0.0) * np.linspace(-1, 1, rows)
    signal *= (gain * heel).astype(np.float32)[:, None]
    signal += np.float32(rng.uniform(80.0, 300.0) if vary else 150.0)
    if vary:  # stitched cassettes: a step in brightness at each seam
        n_seams = int(rng.integers(0, 3))
        for k in range(n_seams):
            at = int(rows * (k + 1) / (n_seams + 1) + rng.uniform(-0.05, 0.05) * rows)
            signal[at:] += np.float32(rng.uniform(-60.0, 60.0))
            signal[at : at + 2] += np.float32(rng.uniform(100.0, 300.0))
    noise_k = rng.uniform(0.5, 1.6) if vary else 0.8
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    noise *= np.sqrt(np.clip(signal, 1.0, None))
    signal += np.float32(noise_k) * noise
    del noise
    if vary and rng.random() < 0.4:  # collimation: blades at the film's sides
        width = int(rng.uniform(0.02, 0.08) * cols)
        value = np.float32(rng.choice([0.0, 4000.0]))
        signal[:, :width] = value
        signal[:, cols - width :] = value
    np.clip(np.rint(signal, out=signal), 0, 4095, out=signal)
    return signal.astype(np.uint16)


def full_leg_films(
    n: int,
    seed: int,
    *,
    hka_range: tuple[float, float] = (170.0, 190.0),
    layouts: tuple[tuple[int, int, float], ...] = FILM_LAYOUTS,
    first: int = 0,
) -> Iterator[FullLegFilm]:
    """``n`` varied films with exact truth, seeded: films ``first`` .. ``first + n - 1`` of
    the seed's sequence (film ``k`` depends on ``seed`` and ``k`` only).

    Each film draws its format from ``layouts`` (rows, columns, pixel mm), both legs' HKA
    uniformly from ``hka_range`` and a body scale 0.88-1.12 (the two legs within 2 %).
    """
    for k in range(first, first + n):
        film_seed = int(np.random.SeedSequence((seed, k)).generate_state(1)[0])
        rng = np.random.default_rng(film_seed)
        rows, cols, px = layouts[int(rng.integers(0, len(layouts)))]
        scale = rng.uniform(0.88, 1.12)
        legs = {
            side: (float(rng.uniform(*hka_range)), float(scale * rng.uniform(0.99, 1.01)))
            for side in ("right", "left")
        }
        film, truths, extra = render_full_leg_film(
            legs, seed=film_seed, shape=(rows, cols), pixel_mm=px
        )
        yield FullLegFilm(
            film=film,
            legs=truths,
            pixel_mm=px,
            rotation_deg=extra["rotation_deg"],
            magnification=extra["magnification"],
            seed=film_seed,
            extra=extra,
        )


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
