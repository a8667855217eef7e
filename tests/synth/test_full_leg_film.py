"""Synthetic full-leg standing films: landmark and HKA truth, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.synth.full_leg import (
    FILM_LAYOUTS,
    full_leg_films,
    hka_from_landmarks,
    render_full_leg,
    render_full_leg_film,
)


@pytest.mark.parametrize("hka", [174.0, 178.5, 180.0, 183.0])
def test_full_leg_landmarks_give_the_hka(hka: float) -> None:
    vol, truths = render_full_leg({"right": (hka, 1.0), "left": (360.0 - hka, 0.95)}, seed=2)
    assert vol.shape == (3600, 1200)
    for t in truths:
        assert hka_from_landmarks(t.hip_rc, t.knee_rc, t.ankle_rc, t.side) == pytest.approx(
            t.hka_deg, abs=1e-6
        )
        # landmarks lie on bone: brighter than the soft tissue beside the leg
        r, c = (round(v) for v in t.knee_rc)
        assert vol.array[r, c] > vol.array[r, c + (150 if t.side == "right" else -150)]


def test_full_leg_is_deterministic() -> None:
    a, _ = render_full_leg({"right": (178.0, 1.0), "left": (179.0, 1.0)}, seed=5)
    b, _ = render_full_leg({"right": (178.0, 1.0), "left": (179.0, 1.0)}, seed=5)
    assert a.array.tobytes() == b.array.tobytes()


def test_film_formats_and_exact_geometry() -> None:
    """Every drawn film holds both legs inside it, right leg on the viewer's left, and the
    truth follows the film's magnification exactly (hip-knee = 440 mm x scale x mag)."""
    films = list(full_leg_films(3, seed=21))
    for f in films:
        rows, cols = f.film.shape
        assert (rows, cols, f.pixel_mm) in FILM_LAYOUTS
        assert f.film.spacing_mm == pytest.approx((f.pixel_mm, f.pixel_mm))
        right, left = f.legs
        assert (right.side, left.side) == ("right", "left")
        assert right.knee_rc[1] < cols / 2 < left.knee_rc[1]
        for leg in f.legs:
            for r, c in (leg.hip_rc, leg.knee_rc, leg.ankle_rc):
                assert 0 < r < rows and 0 < c < cols
            assert leg.hip_rc[0] < leg.knee_rc[0] < leg.ankle_rc[0]
            marks = leg.landmarks_mm()
            femur = float(np.hypot(*np.subtract(marks["knee"], marks["hip"])))
            tibia = float(np.hypot(*np.subtract(marks["ankle"], marks["knee"])))
            assert femur / tibia == pytest.approx(440.0 / 385.0, rel=1e-9)
            assert 440.0 * 0.88 * 0.99 * f.magnification <= femur
            assert femur <= 440.0 * 1.12 * 1.01 * f.magnification
            assert hka_from_landmarks(leg.hip_rc, leg.knee_rc, leg.ankle_rc, leg.side) == (
                pytest.approx(leg.hka_deg, abs=1e-6)
            )


def test_rotation_and_magnification_move_the_truth_with_the_anatomy() -> None:
    """The same legs drawn plainly and with the film variation: the variation is a
    similarity transform of the landmarks (same HKA, distances scaled by the magnification)."""
    legs = {"right": (175.0, 1.0), "left": (184.0, 1.0)}
    _, plain = render_full_leg(legs, seed=3, vary=False)
    _, truths, extra = render_full_leg_film(legs, seed=3, shape=(4000, 1000), pixel_mm=0.36)
    for a, b in zip(plain, truths, strict=True):
        da = np.subtract(a.landmarks_mm()["ankle"], a.landmarks_mm()["hip"])
        db = np.subtract(b.landmarks_mm()["ankle"], b.landmarks_mm()["hip"])
        ratio = np.hypot(*db) / np.hypot(*da)
        assert ratio == pytest.approx(extra["magnification"] / 1.05, rel=1e-9)
        turn = np.degrees(np.arctan2(db[1], db[0]) - np.arctan2(da[1], da[0]))
        assert turn == pytest.approx(extra["rotation_deg"], abs=1e-9)
        assert b.hka_deg == a.hka_deg


def test_bone_is_drawn_at_the_landmarks() -> None:
    """The femoral head centre and the knee and ankle joints lie on bone: brighter than the
    soft tissue 60 mm lateral of them (plain film, no noise-free shortcut)."""
    film, truths = render_full_leg(
        {"right": (178.0, 1.0), "left": (181.0, 1.0)}, seed=8, vary=False
    )
    step = round(60.0 / film.spacing_mm[1])
    for t in truths:
        lateral = -step if t.side == "right" else step
        for r, c in (t.hip_rc, t.knee_rc):
            r, c = round(r), round(c)
            box = film.array[r - 3 : r + 4, c - 3 : c + 4].mean()
            beside = film.array[r - 3 : r + 4, c + lateral - 3 : c + lateral + 4].mean()
            assert box > beside + 100
