"""Leg alignment from three landmarks per leg: mechanical axes, HKA angle, axis deviation.

Positions are (row, column) in mm on a film displayed conventionally: rows run to the feet,
columns to the patient's Left, so the patient's right leg is on the viewer's left and its
lateral side is at smaller columns (the left leg's lateral side at larger columns).

Definitions (Moreland; Cooke):

- femoral mechanical axis: the line from the centre of the femoral head (hip) to the centre
  of the knee;
- tibial mechanical axis: the line from the centre of the knee to the centre of the ankle;
- HKA angle: the angle at the knee between the two axes, written as 180 minus the deviation
  of the tibial axis from the femoral axis' extension: 180 degrees neutral, ``< 180`` varus
  (the knee centre lies lateral to the hip-ankle line: bow-legged), ``> 180`` valgus;
- mechanical axis deviation (MAD): the signed distance of the knee centre from the hip-ankle
  line (the weight-bearing line), mm, positive when the knee lies lateral to it (varus).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError

Point = Sequence[float] | npt.NDArray[Any]
"""A (row, column) position, mm."""


def _points(hip: Point, knee: Point, ankle: Point) -> tuple[np.ndarray, ...]:
    pts = tuple(np.asarray(p, dtype=np.float64).reshape(-1) for p in (hip, knee, ankle))
    if any(p.shape != (2,) or not np.isfinite(p).all() for p in pts):
        raise InputError("landmarks must be finite (row, column) pairs in mm")
    h, k, a = pts
    if np.linalg.norm(k - h) < 1e-6 or np.linalg.norm(a - k) < 1e-6:
        raise InputError("hip, knee and ankle must be distinct points")
    return pts


def _lateral_sign(side: str) -> float:
    """+1 when lateral is towards larger columns (the left leg), -1 for the right leg."""
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', not {side!r}")
    return -1.0 if side == "right" else 1.0


def _knee_offset(h: np.ndarray, k: np.ndarray, a: np.ndarray, side: str) -> float:
    """Signed distance (mm) of the knee from the hip-ankle line, positive lateral."""
    line = a - h
    length = float(np.linalg.norm(line))
    if length < 1e-6:
        raise InputError("hip and ankle must be distinct points")
    # 2D cross product (rows, columns): > 0 when the knee is at larger columns than the line
    cross = line[0] * (k[1] - h[1]) - line[1] * (k[0] - h[0])
    return float(cross / length * _lateral_sign(side))


def hka_deg(hip: Point, knee: Point, ankle: Point, side: str) -> float:
    """The hip-knee-ankle angle (degrees): 180 neutral, ``< 180`` varus, ``> 180`` valgus.

    Args:
        hip, knee, ankle: (row, column) mm of the femoral head centre, knee centre and ankle
            centre (any common unit with square pixels: the angle does not depend on it).
        side: ``"right"`` or ``"left"``: which of the patient's legs (sets which side is
            lateral).

    Raises:
        InputError: non-finite or coincident points, an unknown side.
    """
    h, k, a = _points(hip, knee, ankle)
    f, t = k - h, a - k
    cos = float(f @ t / (np.linalg.norm(f) * np.linalg.norm(t)))
    deviation = math.degrees(math.acos(min(1.0, max(-1.0, cos))))
    return 180.0 - deviation if _knee_offset(h, k, a, side) > 0 else 180.0 + deviation


def mechanical_axis_deviation_mm(hip: Point, knee: Point, ankle: Point, side: str) -> float:
    """Distance (mm) of the knee centre from the hip-ankle line, positive lateral (varus).

    Raises:
        InputError: non-finite or coincident points, an unknown side.
    """
    h, k, a = _points(hip, knee, ankle)
    return _knee_offset(h, k, a, side)


def axis_length_mm(a: Point, b: Point) -> float:
    """Length (mm) of the axis from ``a`` to ``b``, both (row, column) mm."""
    return float(np.hypot(float(b[0]) - float(a[0]), float(b[1]) - float(a[1])))
