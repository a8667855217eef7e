"""Tibial osteophytes at random rim positions, the mid-coronal slab included,
drawn without changing any other parameter of a sampled knee."""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.synth.anatomy import KneeShape
from kneescope.synth.extrusion_truth import extrusion_truth
from kneescope.synth.knee import render_knee
from kneescope.synth.params import (
    SMALL,
    SPUR_ANGLE_RANGE_DEG,
    KneeParams,
    TibialOsteophyte,
    osteophyte_rng,
    sample_knee_params,
)


def test_drawing_the_positions_does_not_advance_the_callers_stream() -> None:
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    osteophyte_rng(rng)
    assert rng.bit_generator.state == before
    plain = np.random.default_rng(3)
    assert rng.uniform(size=5) == pytest.approx(plain.uniform(size=5))


def test_positions_are_random_along_the_rim_slab_included() -> None:
    angles: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(60):
        p = sample_knee_params(np.random.default_rng(seed), klg=2 + seed % 3)
        assert p.tibial_osteophytes is not None
        assert len(p.tibial_osteophytes) == 4
        for o in p.tibial_osteophytes:
            assert abs(o.angle_deg) <= SPUR_ANGLE_RANGE_DEG
            angles[o.medial].append(o.angle_deg)
    for medial in (True, False):
        a = np.array(angles[medial])
        assert (np.abs(a) <= 5.0).sum() >= 2  # some in the +-1 mm slab's neighbourhood
        assert a.std() > 30.0  # spread along the rim, not at fixed corners
        assert len(np.unique(np.round(a, 6))) == len(a)
    again = sample_knee_params(np.random.default_rng(7), klg=3)
    assert again == sample_knee_params(np.random.default_rng(7), klg=3)


def test_no_tibial_spurs_below_kl2() -> None:
    for klg in (0, 1):
        p = sample_knee_params(np.random.default_rng(1), klg=klg)
        assert p.osteophyte_mm == 0.0
        assert KneeShape.from_params(p).tibial_spurs() == []


def test_spur_in_the_slab_reaches_its_radius_beyond_the_rim() -> None:
    spur = TibialOsteophyte(medial=True, angle_deg=0.0, radius_mm=3.0)
    shape = KneeShape.from_params(KneeParams(tibial_osteophytes=(spur,)))
    ((px, py, pz, r),) = shape.tibial_spurs()
    assert (px, py) == pytest.approx((shape.cxm - shape.axm, shape.cym))
    xs = (px - np.arange(0.0, 6.0, 0.05)).astype(np.float32)
    ones = np.ones_like(xs)
    bone = shape.tibia_sdf(xs, ones * np.float32(py), ones * np.float32(pz)) <= 0
    reach = float(px - xs[bone].min())
    assert 0.95 * r <= reach <= r + 1.0
    plain = KneeShape.from_params(KneeParams(tibial_osteophytes=()))
    bare = plain.tibia_sdf(xs, ones * np.float32(py), ones * np.float32(pz)) <= 0
    assert not bare[xs < px - 0.3].any()  # without it the bone ends at the outline


def test_default_positions_are_the_earlier_fixed_corners() -> None:
    shape = KneeShape.from_params(KneeParams(osteophyte_mm=1.8))
    spurs = shape.tibial_spurs()
    assert len(spurs) == 4
    for px, py, _, _ in spurs[:2]:
        rel = ((px - shape.cxm) / shape.axm, (py - shape.cym) / shape.aym)
        assert np.degrees(np.arctan2(abs(rel[1]), abs(rel[0]))) == pytest.approx(55.0, abs=0.1)


def test_extrusion_truth_definitions() -> None:
    zero = extrusion_truth(
        KneeShape.from_params(KneeParams(extrusion_medial=0.0, extrusion_lateral=0.0))
    )
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in zero.values())
    t = extrusion_truth(
        KneeShape.from_params(KneeParams(extrusion_medial=3.0, extrusion_lateral=-1.0))
    )
    assert t["medial_meniscus_extrusion_mm"] == pytest.approx(3.0)
    assert t["medial_meniscus_extrusion_max_mm"] == pytest.approx(3.0, abs=1e-3)
    # a shift along x seen along normals up to 30 deg off it: between 3 cos 30 and 3
    assert 3.0 * np.cos(np.radians(30)) < t["medial_meniscus_extrusion_mean_mm"] < 3.0
    assert t["lateral_meniscus_extrusion_mm"] == pytest.approx(-1.0)
    assert t["lateral_meniscus_extrusion_mean_mm"] < 0.0


def test_rendered_truth_carries_the_extrusion_columns() -> None:
    sample = render_knee(sample_knee_params(np.random.default_rng(2), klg=3), SMALL)
    got = sample.truth.biomarkers
    assert got["medial_meniscus_extrusion_mm"] == pytest.approx(sample.shape.p.extrusion_medial)
    for key in ("extrusion_mm", "extrusion_max_mm", "extrusion_mean_mm"):
        for m in ("medial", "lateral"):
            assert np.isfinite(got[f"{m}_meniscus_{key}"])
