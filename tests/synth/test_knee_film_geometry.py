"""Projected knee outlines and their exact JSW truth (kneescope.synth.knee_film_geometry)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kneescope.synth.knee_film_geometry import (
    JSW_FIXED_FRACTIONS,
    KneeFilmParams,
    build_geometry,
    knee_jsw_truth,
)


def test_mjsw_is_exactly_the_target_and_the_minimum_of_the_profile() -> None:
    for target in ((5.0, 6.0), (1.2, 5.5), (0.4, 0.9)):
        g = build_geometry(KneeFilmParams(jsw_medial_mm=target[0], jsw_lateral_mm=target[1]))
        t = knee_jsw_truth(g)
        assert (t.mjsw_medial_mm, t.mjsw_lateral_mm) == pytest.approx(target, abs=2e-3)
        # brute force over the central 60 % of each compartment
        for medial, m in ((True, t.mjsw_medial_mm), (False, t.mjsw_lateral_mm)):
            a, b = g.compartment(medial)
            xs = np.linspace(a + 0.2 * (b - a), b - 0.2 * (b - a), 20001)
            assert np.min(g.femur_low(xs) - g.tibia_top(xs)) == pytest.approx(m, abs=1e-3)


def test_fixed_locations_are_fractions_of_the_tibial_width_from_each_margin() -> None:
    g = build_geometry(KneeFilmParams(scale=1.07))
    w = g.tibia_lateral_x - g.tibia_medial_x
    assert w == pytest.approx(1.07 * (39.0 + 37.0))
    xm, xl = g.fixed_x(True), g.fixed_x(False)
    assert xm == pytest.approx(g.tibia_medial_x + np.array(JSW_FIXED_FRACTIONS) * w)
    assert xl == pytest.approx(g.tibia_lateral_x - np.array(JSW_FIXED_FRACTIONS) * w)
    t = knee_jsw_truth(g)
    assert t.fixed_medial_mm == pytest.approx(tuple(g.femur_low(xm) - g.tibia_top(xm)))


def test_condyles_are_rounded_not_boxes() -> None:
    g = build_geometry(KneeFilmParams())
    for c in (g.condyle_medial, g.condyle_lateral):
        xs = c.centre_x + c.half_width * np.array([0.0, 0.5, 0.8, 0.95])
        z = c.lower(xs)
        assert np.all(np.diff(z) > 0)  # rises from the lowest point to the sides
        assert z[2] - z[0] > 2.0 and z[3] - z[0] > 5.0


def test_beam_error_shows_two_rims_and_narrows_the_visible_space() -> None:
    p = KneeFilmParams(jsw_medial_mm=5.0, jsw_lateral_mm=6.0)
    aligned = build_geometry(p)
    tilted = replace(aligned, beam_tan=float(np.tan(np.deg2rad(4.0))))
    x = np.array([aligned.medial[0]])
    gap = tilted.tibia_top(x) - tilted.second_rim(x)
    # the rims separate by the compartment's depth x tan(error) at its middle
    assert gap[0] == pytest.approx(aligned.medial[2] * np.tan(np.deg2rad(4.0)), rel=1e-6)
    assert tilted.jsw(x)[0] == pytest.approx(aligned.jsw(x)[0] - gap[0] / 2, abs=1e-9)


def test_osteophytes_leave_margins_and_measured_regions_alone() -> None:
    plain = build_geometry(KneeFilmParams())
    spurs = build_geometry(KneeFilmParams(osteophyte_mm=(6.0, 5.0, 6.0, 5.0)))
    assert spurs.tibia_medial_x == plain.tibia_medial_x
    assert spurs.tibia_lateral_x == plain.tibia_lateral_x
    a, b = knee_jsw_truth(plain), knee_jsw_truth(spurs)
    assert a.fixed_medial_mm == pytest.approx(b.fixed_medial_mm)
    assert a.mjsw_lateral_mm == pytest.approx(b.mjsw_lateral_mm)
    # beyond the medial margin the tibia now has bone (the spur)
    x = np.array([plain.tibia_medial_x - 2.0])
    assert np.isneginf(plain.tibia_top(x)[0]) and np.isfinite(spurs.tibia_top(x)[0])
