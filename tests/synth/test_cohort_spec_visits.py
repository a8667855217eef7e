"""CohortSpec refuses visits the generator cannot write when it is made, with a sentence that
names them (before, ``CohortSpec(visits=("V00", "V02"))`` was accepted and planning a subject
failed with a bare ``KeyError: 'V02'``; the 18-month visit exists in the OAI, not in the
generator)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kneescope.synth.cohort import CohortSpec, plan_subject
from kneescope.synth.visits import VISIT_MONTHS


@pytest.mark.parametrize(
    ("visits", "message"),
    [
        (("V00", "V02", "V03"), "unknown visit code(s) ['V02']"),
        (("V00", "v01"), "unknown visit code(s) ['v01']"),
        ((), "no visits given"),
        (("V03", "V00"), "must be distinct and in time order: ['V00', 'V03']"),
        (("V00", "V01", "V01"), "must be distinct and in time order: ['V00', 'V01']"),
    ],
)
def test_visits_the_generator_cannot_write_are_refused_with_a_sentence(
    visits: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        CohortSpec(visits=visits)
    assert message in str(caught.value)


def test_every_visit_the_generator_writes_is_planned_at_its_months() -> None:
    visits = tuple(VISIT_MONTHS)
    plan = plan_subject(CohortSpec(subjects=1, visits=visits, seed=17030), 0)
    for side in ("right", "left"):
        assert [k.visit for k in plan.knees[side]] == list(visits)
        assert [k.months for k in plan.knees[side]] == [VISIT_MONTHS[v] for v in visits]
