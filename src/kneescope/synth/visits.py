"""OAI visit codes: months since enrolment, release folders and study-description names."""

from __future__ import annotations

from kneescope.core.oai_layout import VISIT_MONTHS as OAI_VISIT_MONTHS
from kneescope.core.oai_layout import latest_release
from kneescope.errors import InputError

VISIT_MONTHS: dict[str, int] = {
    visit: OAI_VISIT_MONTHS[visit] for visit in ("V00", "V01", "V03", "V05", "V06", "V08", "V10")
}
"""Visit code -> months since baseline, for the MRI visits the generator writes."""

VISIT_RELEASE: dict[str, str] = {visit: latest_release(visit) for visit in VISIT_MONTHS}
"""Visit code -> image release folder name."""

VISIT_NAME: dict[str, str] = {
    "V00": "ENROLLMENT",
    "V01": "12 MONTH",
    "V03": "24 MONTH",
    "V05": "36 MONTH",
    "V06": "48 MONTH",
    "V08": "72 MONTH",
    "V10": "96 MONTH",
}
"""Visit code -> the visit word used in StudyDescription (``OAI^MR^ENROLLMENT^RIGHT``)."""


def parse_visits(text: str) -> tuple[str, ...]:
    """``"V00,V01"`` -> ``("V00", "V01")``, validated and sorted by time.

    Raises:
        InputError: an unknown code or an empty list.
    """
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    if not codes:
        raise InputError("no visits given; expected e.g. --visits V00,V01")
    unknown = [c for c in codes if c not in VISIT_MONTHS]
    if unknown:
        raise InputError(
            f"unknown visit code(s) {unknown}; expected some of {', '.join(VISIT_MONTHS)}"
        )
    return tuple(sorted(set(codes), key=VISIT_MONTHS.__getitem__))


def visit_prefix(code: str) -> str:
    """OAI variable prefix of a visit: ``"V03"`` -> ``"V03"`` (as in ``V03XRKL``)."""
    return code
