"""The cohort plan: demographics, KLG distribution, incidence, progression, treatment."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kneescope.errors import InputError
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.cohort import (
    BASELINE_KLG,
    CARTILAGE_KEYS,
    CohortSpec,
    SubjectPlan,
    participant_id,
    plan_cohort,
    plan_subject,
    visit_fluctuation,
)
from kneescope.synth.truth import plate_surface_truth
from kneescope.synth.visits import parse_visits


@pytest.fixture(scope="module")
def big() -> list[SubjectPlan]:
    spec = CohortSpec(subjects=600, visits=("V00", "V03", "V06"), seed=11, treatment_effect=0.5)
    return plan_cohort(spec)


def _knees(plans: list[SubjectPlan]) -> list[tuple[SubjectPlan, str]]:
    return [(p, s) for p in plans for s in ("right", "left")]


def test_baseline_klg_distribution_within_ranges(big: list[SubjectPlan]) -> None:
    """1200 knees: each grade within +-5 percentage points of the OAI-like target."""
    base = np.array([p.knees[s][0].klg for p, s in _knees(big)])
    dist = np.bincount(base, minlength=5) / base.size
    assert np.all(np.abs(dist - np.array(BASELINE_KLG)) < 0.05), dist
    assert 0.33 <= dist[0] <= 0.43
    assert 0.02 <= dist[4] <= 0.08


def test_incident_oa_a_few_percent_per_year(big: list[SubjectPlan]) -> None:
    knees = _knees(big)
    base = np.array([p.knees[s][0].klg for p, s in knees])
    last = np.array([p.knees[s][-1].klg for p, s in knees])
    at_risk = base <= 1
    per_year = ((last >= 2) & at_risk).sum() / at_risk.sum() / 4.0
    assert 0.005 <= per_year <= 0.05, per_year


def test_klg_never_decreases_and_loss_grows(big: list[SubjectPlan]) -> None:
    for p, s in _knees(big):
        klgs = [v.klg for v in p.knees[s]]
        assert klgs == sorted(klgs)
        loss = [v.params.loss_medial + v.params.loss_lateral for v in p.knees[s]]
        assert loss == sorted(loss)
    mean_loss = [
        np.mean([p.knees[s][i].params.loss_medial for p, s in _knees(big)]) for i in range(3)
    ]
    assert mean_loss[0] < mean_loss[1] < mean_loss[2]


def test_treatment_slows_progression(big: list[SubjectPlan]) -> None:
    def loss_rate(arm: str) -> float:
        sel = [(p, s) for p, s in _knees(big) if p.arm == arm and p.knees[s][0].klg >= 2]
        return float(
            np.mean([p.knees[s][-1].severity - p.knees[s][0].severity for p, s in sel]) / 4.0
        )

    arms = {p.arm for p in big}
    assert arms == {"control", "treatment"}
    ratio = loss_rate("treatment") / loss_rate("control")
    assert 0.3 < ratio < 0.7  # effect 0.5 (rates are random: allow sampling noise)


def test_no_arm_without_effect() -> None:
    plans = plan_cohort(CohortSpec(subjects=20, visits=("V00",), seed=1))
    assert {p.arm for p in plans} == {"control"}


def test_truth_thickness_loss_grows_with_time() -> None:
    """Rendered-truth mean tibial thickness falls over 4 years in progressing knees, knee by
    knee, once the visit's biological fluctuation (issue 17: it alone can make a knee
    apparently thicken) is taken out of the cartilage parameters."""
    spec = CohortSpec(subjects=5, visits=("V00", "V03", "V06"), seed=5)
    drops = []
    for p in plan_cohort(spec):
        for side_index, s in enumerate(("right", "left")):
            if p.knees[s][0].klg < 2:
                continue
            plate = "medial_tibial" if p.medial_predominant[s] else "lateral_tibial"
            nominal: list[float] = []
            for v in p.knees[s]:
                scale = 1.0 + visit_fluctuation(spec.seed, p.index, side_index, v.months)
                steady = v.params.model_copy(
                    update={k: getattr(v.params, k) / scale for k in CARTILAGE_KEYS}
                )
                shape = KneeShape.from_params(steady)
                nominal.append(plate_surface_truth(plate, shape, 0.0).thickness_mean_ab_mm)
            assert nominal[0] >= nominal[1] >= nominal[2]
            drops.append(nominal[0] - nominal[2])
    assert drops and float(np.mean(drops)) > 0.02


def test_participant_ids_unique_and_oai_like() -> None:
    ids = [participant_id(3, i) for i in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 7 and i.startswith("9") for i in ids)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 10_000))
def test_plan_is_deterministic_and_independent_of_visit_list(seed: int, index: int) -> None:
    a = plan_subject(CohortSpec(visits=("V00", "V01"), seed=seed), index)
    b = plan_subject(CohortSpec(visits=("V00", "V01", "V03"), seed=seed), index)
    assert a.participant_id == b.participant_id
    assert a.knees["right"][0] == b.knees["right"][0]
    assert a.knees["left"][1] == b.knees["left"][1]
    assert a.visit_dates["V01"] == b.visit_dates["V01"]


def test_parse_visits() -> None:
    assert parse_visits("v03, V00") == ("V00", "V03")
    with pytest.raises(InputError, match="unknown visit"):
        parse_visits("V00,V02")
    with pytest.raises(InputError):
        parse_visits(" , ")
