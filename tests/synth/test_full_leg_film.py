"""Synthetic full-leg standing films: landmark and HKA truth, determinism."""

from __future__ import annotations

import pytest

from kneescope.synth.full_leg import hka_from_landmarks, render_full_leg


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
