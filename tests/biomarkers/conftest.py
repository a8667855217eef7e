"""Fixtures: the compact toy knee (see kneescope.biomarkers.knee_phantom), placed obliquely,
and its measurement."""

from __future__ import annotations

import pytest

from kneescope.biomarkers import KneeMeasurements, measure_knee
from kneescope.biomarkers.knee_phantom import (
    OBLIQUE_DEG,
    ToyKnee,
    render_compact_toy_knee,
    rotation_from_euler_deg,
)


@pytest.fixture(scope="session")
def toy_knee() -> ToyKnee:
    return render_compact_toy_knee(rotation=rotation_from_euler_deg(*OBLIQUE_DEG))


@pytest.fixture(scope="session")
def toy_measured(toy_knee: ToyKnee) -> KneeMeasurements:
    return measure_knee(toy_knee.labels)
