"""Reference values for validating biomarkers on synthetic knees
(kneescope.biomarkers.validation): meniscal coverage of the continuous phantom, and the
visibility of thin cartilage in a rendered label map (the evidence for the half-voxel
reference rule, docs/biomarkers.md)."""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.biomarkers.validation import (
    label_visibility_by_thickness,
    synth_tibial_coverage_pct,
)
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.knee import KneeSample, render_knee
from kneescope.synth.params import SMALL, sample_knee_params

PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")


@pytest.mark.parametrize("visible_threshold_mm", [0.0, 0.35])
def test_coverage_falls_as_the_meniscus_extrudes(visible_threshold_mm: float) -> None:
    params = sample_knee_params(np.random.default_rng(0), klg=2)
    coverage = []
    for extrusion_mm in (0.0, 3.0):
        shape = KneeShape.from_params(params.model_copy(update={"extrusion_medial": extrusion_mm}))
        coverage.append(synth_tibial_coverage_pct(shape, True, visible_threshold_mm))
    assert 30.0 < coverage[1] < coverage[0] - 3.0 < 90.0


def test_visible_rule_excludes_the_plates_thin_periphery() -> None:
    shape = KneeShape.from_params(sample_knee_params(np.random.default_rng(0), klg=2))
    plain = synth_tibial_coverage_pct(shape, False)
    # a huge threshold leaves only the thick centre of the plate, far from the meniscus
    assert synth_tibial_coverage_pct(shape, False, 2.0) < plain - 10.0


@pytest.fixture(scope="module")
def small_knee() -> KneeSample:
    params = sample_knee_params(np.random.default_rng(0), klg=2)
    return render_knee(params.model_copy(update={"side": "left"}), SMALL)


@pytest.mark.parametrize("plate", PLATES)
def test_label_map_hides_cartilage_under_half_a_voxel(small_knee: KneeSample, plate: str) -> None:
    # small grid: 2.33 x 1.09 x 1.09 mm, half the largest spacing 1.17 mm
    bands = label_visibility_by_thickness(
        plate,
        small_knee.shape,
        small_knee.labels.array,
        small_knee.to_canonical,
        edges_mm=(0.15, 0.6, 1.2, 10.0),
    )
    (_, _, thin_area, thin_share), _, (_, _, thick_area, thick_share) = bands
    assert thin_area > 20.0 and thick_area > 100.0
    assert thin_share < 0.35
    assert thick_share > 0.9
