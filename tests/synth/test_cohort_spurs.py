"""Cohort knees (``kneescope synth``) carry tibial spurs at random rim positions, the
mid-coronal slab included, fixed per knee across visits."""

from __future__ import annotations

from kneescope.synth.cohort import CohortSpec, plan_cohort
from kneescope.synth.params import SPUR_ANGLE_RANGE_DEG


def test_cohort_spurs_are_random_per_knee_fixed_over_visits_and_reach_the_slab() -> None:
    plans = plan_cohort(CohortSpec(subjects=40, visits=("V00", "V03", "V06"), seed=3))
    per_knee = []
    for plan in plans:
        for visits in plan.knees.values():
            spurs = {v.params.tibial_osteophytes for v in visits}
            assert len(spurs) == 1  # the same positions at every visit
            (knee_spurs,) = spurs
            assert knee_spurs is not None
            assert sorted(s.medial for s in knee_spurs) == [False, False, True, True]
            per_knee.append(tuple(s.angle_deg for s in knee_spurs))
    angles = [a for knee in per_knee for a in knee]
    assert len(set(per_knee)) == len(per_knee)  # each knee its own positions
    assert all(abs(a) <= SPUR_ANGLE_RANGE_DEG for a in angles)
    assert any(abs(a) <= 5.0 for a in angles)  # some spur sits in the mid-coronal slab
    assert min(angles) < -50.0 and max(angles) > 50.0
