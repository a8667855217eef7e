"""Leg alignment (kneescope.xray.alignment) against legs of known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kneescope.errors import InputError
from kneescope.synth.full_leg import full_leg_films, hka_from_landmarks
from kneescope.xray.alignment import hka_deg, mechanical_axis_deviation_mm


def _leg(side: str, hka: float, *, tilt: float = 3.0) -> tuple[np.ndarray, ...]:
    """Hip, knee, ankle (row, column) mm of a leg built from its HKA (rows down)."""
    lateral = -1.0 if side == "right" else 1.0  # column direction of the lateral side
    hip = np.array([100.0, 300.0])
    a = math.radians(tilt)  # femur runs down and medially
    knee = hip + 440.0 * np.array([math.cos(a), -lateral * math.sin(a)])
    b = a + math.radians(180.0 - hka)  # varus: the tibia turns further medially
    ankle = knee + 380.0 * np.array([math.cos(b), -lateral * math.sin(b)])
    return hip, knee, ankle


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("hka", [168.0, 174.5, 180.0, 183.0, 191.0])
def test_hka_of_a_leg_built_from_it(side: str, hka: float) -> None:
    hip, knee, ankle = _leg(side, hka)
    assert hka_deg(hip, knee, ankle, side) == pytest.approx(hka, abs=1e-9)


def test_varus_is_below_180_and_the_knee_lateral_of_the_weight_bearing_line() -> None:
    # right leg, straight down the film; the knee 20 mm lateral (smaller column) of the line
    hip, knee, ankle = (0.0, 500.0), (400.0, 480.0), (800.0, 500.0)
    angle = hka_deg(hip, knee, ankle, "right")
    assert angle == pytest.approx(180.0 - 2 * math.degrees(math.atan(20 / 400)), abs=1e-9)
    assert mechanical_axis_deviation_mm(hip, knee, ankle, "right") == pytest.approx(20.0)
    # the same points as a left leg: the knee is medial, so valgus
    assert hka_deg(hip, knee, ankle, "left") == pytest.approx(360.0 - angle, abs=1e-9)
    assert mechanical_axis_deviation_mm(hip, knee, ankle, "left") == pytest.approx(-20.0)


def test_hka_does_not_change_with_rotation_scale_or_shift() -> None:
    hip, knee, ankle = _leg("left", 176.0)
    t = math.radians(7.0)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    moved = [1.13 * rot @ p + np.array([-50.0, 80.0]) for p in (hip, knee, ankle)]
    assert hka_deg(*moved, "left") == pytest.approx(176.0, abs=1e-9)


def test_agrees_with_the_generator_truth() -> None:
    film = next(full_leg_films(1, seed=4))
    for leg in film.legs:
        marks = leg.landmarks_mm()
        assert hka_deg(marks["hip"], marks["knee"], marks["ankle"], leg.side) == pytest.approx(
            leg.hka_deg, abs=1e-6
        )
        assert hka_from_landmarks(leg.hip_rc, leg.knee_rc, leg.ankle_rc, leg.side) == (
            pytest.approx(leg.hka_deg, abs=1e-6)
        )


@pytest.mark.parametrize(
    ("points", "side"),
    [
        (((0, 0), (0, 0), (5, 5)), "right"),
        (((0, 0), (1, float("nan")), (5, 5)), "left"),
        (((0, 0), (1, 1), (5, 5)), "both"),
    ],
)
def test_bad_landmarks_are_refused(points: tuple[tuple[float, float], ...], side: str) -> None:
    with pytest.raises(InputError):
        hka_deg(*points, side)
