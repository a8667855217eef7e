"""MRI findings from a label map and its image (issue 16), against the generator's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.biomarkers.findings import FindingsConfig, detect_findings, medial_side
from kneescope.biomarkers.measure import measure_knee
from kneescope.errors import ConfigError, InputError
from kneescope.synth.cohort import CohortSpec, plan_subject
from kneescope.synth.findings_truth import findings_truth
from kneescope.synth.knee import KneeSample, render_knee
from kneescope.synth.params import SMALL, Lesion, MarrowLesion, MeniscalTear


@pytest.fixture(scope="module")
def knee() -> tuple[KneeSample, dict[str, float], dict[str, float]]:
    """A left SMALL knee: medial full-thickness tibial defect, medial femoral BML, lateral
    meniscal maceration, medial extrusion 4.5 mm; (sample, truth, measured values)."""
    base = plan_subject(CohortSpec(subjects=1, visits=("V00",), seed=7), 0).knees["left"][0]
    params = base.params.model_copy(
        update={
            "lesions": (
                Lesion(plate="medial_tibial", centre_mm=(-20.0, 0.0), radius_mm=5.0, depth=1.5),
            ),
            "marrow_lesions": (MarrowLesion(bone="femur", centre_mm=(-25.0, -2.0), radius_mm=9.0),),
            "meniscal_tears": (
                MeniscalTear(medial=False, kind="maceration", angle_deg=-130.0, length_mm=16.0),
            ),
            "extrusion_medial": 4.5,
            "extrusion_lateral": 0.5,
        }
    )
    sample = render_knee(params, SMALL)
    truth = findings_truth(params, sample.truth.biomarkers)
    measured = measure_knee(sample.labels, with_maps=False).values
    return sample, truth, measured


def test_findings_match_the_truth_per_compartment(
    knee: tuple[KneeSample, dict[str, float], dict[str, float]],
) -> None:
    sample, truth, measured = knee
    found = detect_findings(
        sample.image.array, sample.labels.array, sample.labels.affine_ras, measured
    )
    assert truth["finding_ftd_medial"] == 1.0 and truth["finding_ftd_lateral"] == 0.0
    for name in ("ftd", "bml", "tear"):
        for c in ("medial", "lateral"):
            assert found[f"finding_{name}_{c}"] == truth[f"finding_{name}_{c}"], (name, c)
    assert found["finding_bml_medial_grade"] == truth["finding_bml_medial_grade"] >= 1
    assert found["bml_medial_volume_mm3"] == pytest.approx(truth["bml_medial_volume_mm3"], rel=0.4)
    assert found["finding_ftd_medial_grade"] >= 1
    # SMALL's 2.3 mm slices cannot show extrusion: not measurable, never a guess
    assert np.isnan(found["finding_extrusion_medial"])
    assert truth["finding_extrusion_medial"] == 1.0


def test_thresholds_move_the_decision_and_medial_side_follows_the_plates(
    knee: tuple[KneeSample, dict[str, float], dict[str, float]],
) -> None:
    sample, _, measured = knee
    strict = FindingsConfig(bml_volume_mm3=1e6, defect_area_mm2=1e6)
    found = detect_findings(
        sample.image.array, sample.labels.array, sample.labels.affine_ras, measured, strict
    )
    assert found["finding_bml_medial"] == 0.0 and found["finding_ftd_medial"] == 0.0
    assert found["finding_ftd_medial_grade"] == 0.0
    side = medial_side(sample.labels.array, sample.labels.affine_ras)
    assert side is not None
    assert side[sample.labels.array == 4].all() and not side[sample.labels.array == 5].any()
    no_plates = np.where(np.isin(sample.labels.array, (4, 5)), 0, sample.labels.array)
    assert medial_side(no_plates, sample.labels.affine_ras) is None
    blind = detect_findings(sample.image.array, no_plates, sample.labels.affine_ras, {})
    assert np.isnan(blind["finding_bml_medial"]) and np.isnan(blind["finding_ftd_lateral"])


def test_mri_findings_step_writes_its_declared_columns(
    knee: tuple[KneeSample, dict[str, float], dict[str, float]], tmp_path: Path
) -> None:
    from kneescope.capabilities.findings.step import MriFindings
    from kneescope.cohort.item import Item
    from kneescope.cohort.step import StepContext
    from kneescope.cohort.step_registry import step_class
    from kneescope.core import Volume

    sample, truth, _ = knee
    assert step_class("mri_findings") is MriFindings
    step = MriFindings()
    item = Item(item_id="knee-1", path=str(tmp_path / "knee-1"), side="left")
    data = {"image": sample.image, "labels": sample.labels}
    result = step.run(item, StepContext(tmp_path, data))
    assert set(result.values) == {c.name for c in MriFindings.results}
    assert result.values["finding_bml_medial"] == truth["finding_bml_medial"] == 1.0
    assert result.values["finding_tear_lateral"] == 1.0
    cropped = Volume(sample.labels.array[:-1], sample.labels.affine_ras, {"side": "left"})
    with pytest.raises(InputError, match="grid"):
        step.run(item, StepContext(tmp_path, {"image": sample.image, "labels": cropped}))
    with pytest.raises(ConfigError, match="bml_volume_mm3"):
        MriFindings(bml_volume_mm3=-1.0)
