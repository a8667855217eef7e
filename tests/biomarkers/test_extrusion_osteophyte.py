"""Meniscal extrusion from the osteophyte-free tibial rim.

A synthetic knee with a marginal tibial osteophyte placed in each compartment's mid-coronal
slab (2 mm medial, 3 mm lateral): the extrusion measured from its label map (mid-coronal,
3D maximum and mean over the meniscal body) must match the exact truth of the analytic
shape (``KneeTruth.biomarkers``), which is relative to the osteophyte-free rim. The old rim
(the outermost bone in the slab, ``MeasureConfig(extrusion_rim="outermost-bone")``) reads
more than 1 mm too little here (0.73 / -2.04 mm for 2.08 / 0.54 mm of truth on the full
grid, benchmarks/extrusion_grids.py --osteophytes).
"""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.biomarkers import KneeMeasurements, MeasureConfig, measure_knee
from kneescope.biomarkers.menisci import extrusion_columns
from kneescope.synth.knee import KneeSample, render_knee
from kneescope.synth.params import SizeSpec, TibialOsteophyte, sample_knee_params

TOLERANCE_MM = 0.5
"""Stated extrusion accuracy on the DESS grid (docs/biomarkers.md: worst error of the
benchmark benchmarks/extrusion_grids.py --osteophytes is below it)."""
SPURS = (
    TibialOsteophyte(medial=True, angle_deg=0.0, radius_mm=2.0),
    TibialOsteophyte(medial=False, angle_deg=0.0, radius_mm=3.0),
)
# the OAI DESS voxel (0.7 x 0.365 x 0.365 mm) over a field of view that just holds the
# joint (84 x 96 x 96 mm), to keep the test fast
DESS_CROP = SizeSpec(name="dess-crop", shape=(120, 264, 264), spacing_mm=(0.7, 0.3646, 0.3646))


def _knee(spurs: tuple[TibialOsteophyte, ...]) -> KneeSample:
    params = sample_knee_params(np.random.default_rng(0), klg=2)
    params = params.model_copy(
        update={
            "tibial_osteophytes": spurs,
            "obliquity_deg": (0.0, 0.0, 0.0),
            "offset_mm": (0.0, 0.0, 0.0),
        }
    )
    return render_knee(params, DESS_CROP)


@pytest.fixture(scope="module")
def spurred() -> tuple[KneeSample, KneeMeasurements]:
    sample = _knee(SPURS)
    return sample, measure_knee(sample.labels, with_maps=False)


def test_spurs_sit_in_the_slab_and_reach_beyond_the_rim(
    spurred: tuple[KneeSample, KneeMeasurements],
) -> None:
    """Premise: both spurs are centred on the rim in the mid-coronal plane and reach their
    radius beyond it (the analytic bone), so they would move an outermost-bone rim."""
    shape = spurred[0].shape
    spurs = shape.tibial_spurs()
    assert len(spurs) == 2
    for (px, py, pz, r), (cx, cy, ax), size in zip(
        spurs,
        ((shape.cxm, shape.cym, shape.axm), (shape.cxl, shape.cyl, shape.axl)),
        (2.0, 3.0),
        strict=True,
    ):
        assert py == pytest.approx(cy)
        assert abs(px - cx) == pytest.approx(ax)
        assert r == pytest.approx(size * shape.s)
        out = np.sign(px - cx)
        reach = np.arange(0.0, 6.0, 0.05, dtype=np.float32)
        xs = (px + out * reach).astype(np.float32)
        inside = shape.tibia_sdf(xs, np.full_like(xs, py), np.full_like(xs, pz)) <= 0
        assert reach[inside].max() >= 0.9 * r


def test_extrusion_matches_the_truth_with_spurs_in_the_slab(
    spurred: tuple[KneeSample, KneeMeasurements],
) -> None:
    sample, m = spurred
    truth = sample.truth.biomarkers
    for name in ("medial", "lateral"):
        for key in extrusion_columns(name):
            assert np.isfinite(m.values[key]), key
            assert m.values[key] == pytest.approx(truth[key], abs=TOLERANCE_MM), key
    assert m.qc["qc_extrusion_grid_too_coarse"] is False
    # the spurs are where they matter: the old rim (outermost bone in the slab) is fooled
    old = measure_knee(
        sample.labels, config=MeasureConfig(extrusion_rim="outermost-bone"), with_maps=False
    )
    for name in ("medial", "lateral"):
        key = f"{name}_meniscus_extrusion_mm"
        assert old.values[key] < truth[key] - 1.0, key


def test_truth_of_the_spurred_knee_is_the_osteophyte_free_extrusion(
    spurred: tuple[KneeSample, KneeMeasurements],
) -> None:
    sample = spurred[0]
    truth = sample.truth.biomarkers
    p = sample.shape.p
    assert truth["medial_meniscus_extrusion_mm"] == pytest.approx(p.extrusion_medial)
    assert truth["lateral_meniscus_extrusion_mm"] == pytest.approx(p.extrusion_lateral)
    for name in ("medial", "lateral"):
        mid, top, mean = (truth[k] for k in extrusion_columns(name))
        assert top == pytest.approx(mid, abs=1e-3)  # the meniscus is shifted outwards
        assert 0.0 < mean < top


def _ellipse_rays(phi: np.ndarray, cx: float, ax: float, ay: float) -> np.ndarray:
    """Distance from (0, 0) to the ellipse ((u - cx) / ax)^2 + (v / ay)^2 = 1 along phi."""
    c, s = np.cos(phi), np.sin(phi)
    qa = (c / ax) ** 2 + (s / ay) ** 2
    qb = -2.0 * cx * c / ax**2
    qc = (cx / ax) ** 2 - 1.0
    return np.asarray((-qb + np.sqrt(qb * qb - 4.0 * qa * qc)) / (2.0 * qa))


@pytest.mark.parametrize(
    ("bumps", "noise_mm"),
    [
        (((0.0, 2.0),), 0.05),  # one 2 mm spur in the slab
        (((0.0, 3.6), (20.0, 3.6)), 0.08),  # two KL-3 sized spurs side by side
        (((-10.0, 5.4), (55.0, 5.4)), 0.08),  # two KL-4 sized spurs
        (((0.0, 5.4), (35.0, 5.4)), 0.08),  # KL-4 spurs over the slab and the body
    ],
)
def test_fit_rim_bridges_spurs(bumps: tuple[tuple[float, float], ...], noise_mm: float) -> None:
    """fit_rim on rays of an off-centre ellipse (plateau-like: 19 x 24 mm, centre 1.5 mm
    inwards) with spur-shaped outward bumps (reaching r beyond the rim, r + 1.5 mm either
    side along it) and noise: over the body (+-50 deg) the fitted curve is the ellipse
    within 0.3 mm, and no ray at a spur's centre is kept."""
    from kneescope.biomarkers.menisci import _rim_design, fit_rim

    phi = np.deg2rad(np.arange(-80.0, 80.5, 2.0))
    clean = _ellipse_rays(phi, -1.5, 19.0, 24.0)
    body = np.abs(phi) <= np.deg2rad(50.0)
    for seed in range(3):
        raw = clean + np.random.default_rng(seed).normal(0.0, noise_mm, phi.shape)
        for centre_deg, r in bumps:
            along = (phi - np.deg2rad(centre_deg)) * clean  # mm along the rim
            raw = raw + r * np.sqrt(np.clip(1.0 - (along / (r + 1.5)) ** 2, 0.0, None))
        fitted = fit_rim(phi, raw)
        assert fitted is not None
        coef, inlier = fitted
        assert np.abs(_rim_design(phi) @ coef - clean)[body].max() < 0.3
        for centre_deg, _ in bumps:
            assert not inlier[np.abs(np.rad2deg(phi) - centre_deg) <= 2.0].any()


def test_fit_rim_refuses_a_rim_it_cannot_see() -> None:
    from kneescope.biomarkers.menisci import fit_rim

    phi = np.deg2rad(np.arange(-80.0, 80.5, 2.0))
    raw = _ellipse_rays(phi, -1.5, 19.0, 24.0)
    raw[phi > np.deg2rad(20.0)] = np.nan  # nothing found anteriorly
    assert fit_rim(phi, raw) is None
    assert fit_rim(phi[:8], raw[:8]) is None
