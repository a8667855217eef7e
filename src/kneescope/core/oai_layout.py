"""The OAI's image release folders and visit codes: one table for importers and generators."""

from __future__ import annotations

from types import MappingProxyType

RELEASE_TO_VISIT = MappingProxyType(
    {
        "0.C.2": "V00",
        "0.E.1": "V00",
        "1.C.2": "V01",
        "1.E.1": "V01",
        "2.D.2": "V02",
        "3.C.2": "V03",
        "3.E.1": "V03",
        "4.G.1": "V04",
        "5.C.1": "V05",
        "5.E.1": "V05",
        "6.C.1": "V06",
        "6.E.1": "V06",
        "8.C.1": "V08",
        "8.E.1": "V08",
        "10.C.1": "V10",
        "10.E.1": "V10",
    }
)
"""OAI image release folder -> visit code (V00 baseline, V01 12 m, V02 18 m, ... V10 96 m)."""

VISIT_MONTHS = MappingProxyType(
    {
        "V00": 0,
        "V01": 12,
        "V02": 18,
        "V03": 24,
        "V04": 30,
        "V05": 36,
        "V06": 48,
        "V08": 72,
        "V10": 96,
    }
)
"""Visit code -> months since enrolment, for every visit with an image release."""


def latest_release(visit: str) -> str:
    """The last release folder of ``visit`` (e.g. ``"V00"`` -> ``"0.E.1"``).

    Raises:
        KeyError: ``visit`` has no image release.
    """
    releases = [r for r, v in RELEASE_TO_VISIT.items() if v == visit]
    if not releases:
        raise KeyError(visit)
    return releases[-1]
