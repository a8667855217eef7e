"""Biomarkers of synthetic knees (kneescope.synth) against the synth truth.

Truth definitions (docs/synth.md): plate mean thickness = area-weighted imposed thickness
(along the bone normal) over the bone surface where it exceeds 0.15 mm; volumes of the
continuous shapes; extrusion = the phantom's extrusion parameter (meniscus outer edge beyond
the compartment's plateau outline in the coronal plane through its centre). Coverage has no
synth truth: kneescope.biomarkers.validation computes it from the continuous phantom.

The full-size (OAI DESS grid) tests take ~1 min per knee to render and are marked slow;
the small grid (2.3 x 1.1 x 1.1 mm voxels) is only a smoke test: cartilage there is one or
two voxels thick.
"""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.biomarkers import KneeMeasurements, measure_knee
from kneescope.biomarkers.validation import synth_tibial_coverage_pct
from kneescope.synth.knee import KneeSample, render_knee
from kneescope.synth.params import FULL, SMALL, sample_knee_params

PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")


def _render(seed: int, klg: int, side: str, size: object) -> tuple[KneeSample, KneeMeasurements]:
    params = sample_knee_params(np.random.default_rng(seed), klg=klg)
    sample = render_knee(params.model_copy(update={"side": side}), size)  # type: ignore[arg-type]
    return sample, measure_knee(sample.labels)


def test_small_synthetic_knee_smoke() -> None:
    sample, m = _render(0, 2, "left", SMALL)
    assert m.side == "left" and m.side_from_anatomy == "left"
    assert m.qc["qc_ok"] is True
    for plate in PLATES:
        truth = sample.truth.plates[plate]
        # two-voxel-thick cartilage: only gross agreement is possible here
        assert m.values[f"{plate}_cartilage_volume_mm3"] == pytest.approx(truth.volume_mm3, rel=0.2)
        assert 0.5 < m.values[f"{plate}_cartilage_thickness_mean_mm"] < 4.0


@pytest.fixture(scope="module", params=[(0, 2, "right"), (1, 4, "left")], ids=str)
def full_knee(request: pytest.FixtureRequest) -> tuple[KneeSample, KneeMeasurements]:
    seed, klg, side = request.param
    return _render(seed, klg, side, FULL)


_THIN_RIM = (
    "synth truth averages over bone where the imposed thickness exceeds 0.15 mm; cartilage "
    "thinner than ~half a voxel is absent from the label map (the patella's broad taper), so "
    "the visible cartilage is thicker on average: +5 to +10 % "
    "(docs/biomarkers.md)"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "plate",
    [
        "femoral",
        "lateral_tibial",
        "medial_tibial",
        pytest.param("patellar", marks=pytest.mark.xfail(strict=False, reason=_THIN_RIM)),
    ],
)
def test_plate_mean_thickness_within_5_percent(
    full_knee: tuple[KneeSample, KneeMeasurements], plate: str
) -> None:
    sample, m = full_knee
    truth = sample.truth.plates[plate].thickness_mean_mm
    assert m.values[f"{plate}_cartilage_thickness_mean_mm"] == pytest.approx(truth, rel=0.05)


@pytest.mark.slow
def test_volumes_within_2_percent(full_knee: tuple[KneeSample, KneeMeasurements]) -> None:
    sample, m = full_knee
    for plate in PLATES:
        truth = sample.truth.plates[plate].volume_mm3
        assert m.values[f"{plate}_cartilage_volume_mm3"] == pytest.approx(truth, rel=0.02), plate
    for men in ("medial", "lateral"):
        truth = sample.truth.meniscus_volume_mm3[men]
        assert m.values[f"{men}_meniscus_volume_mm3"] == pytest.approx(truth, rel=0.02), men


@pytest.mark.slow
def test_extrusion_within_half_a_millimetre(
    full_knee: tuple[KneeSample, KneeMeasurements],
) -> None:
    sample, m = full_knee
    for men in ("medial", "lateral"):
        truth = sample.truth.extrusion_mm[men]
        assert m.values[f"{men}_meniscus_extrusion_mm"] == pytest.approx(truth, abs=0.5), men


@pytest.mark.slow
def test_coverage_within_5_points(full_knee: tuple[KneeSample, KneeMeasurements]) -> None:
    sample, m = full_knee
    for men in ("lateral", "medial"):
        truth = synth_tibial_coverage_pct(sample.shape, medial=men == "medial")
        measured = m.values[f"{men}_tibial_coverage_pct"]
        if men == "medial" and sample.shape.p.loss_medial > 0.3 and abs(measured - truth) > 5:
            pytest.xfail(
                f"medial coverage {measured:.1f} vs {truth:.1f} %: in advanced OA the plate's "
                "thin periphery and the meniscus's thin inner edge (under half a voxel) are "
                "absent from the label map, which lowers measured coverage (docs/biomarkers.md)"
            )
        assert measured == pytest.approx(truth, abs=5.0), men


@pytest.mark.slow
def test_denuded_area_detected_where_truth_has_it(
    full_knee: tuple[KneeSample, KneeMeasurements],
) -> None:
    sample, m = full_knee
    for plate in PLATES:
        truth = sample.truth.plates[plate].denuded_area_mm2
        found = m.values[f"{plate}_denuded_bone_area_mm2"]
        if truth > 10.0:
            assert found > 0.5 * truth, plate
        else:
            assert found < 20.0, plate
    assert m.side == sample.truth.side
    assert m.qc["qc_ok"] is True
