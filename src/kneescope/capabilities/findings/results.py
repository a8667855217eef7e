"""Every column of the ``mri_findings`` step, with its unit (compartments ``medial`` and
``lateral`` tibiofemoral; definitions in :mod:`kneescope.biomarkers.findings`)."""

from __future__ import annotations

from kneescope.biomarkers.findings import FINDING_WORDS, FINDINGS
from kneescope.cohort.result_schema import ResultColumn
from kneescope.synth.findings_truth import COMPARTMENTS

CAPABILITY = "findings"
GRADED = ("ftd", "bml")
"""Findings with a MOAKS-style size grade (0 none, 1 < 33 %, 2 33-66 %, 3 > 66 % of the
subregion)."""


def _columns() -> tuple[ResultColumn, ...]:
    out: list[ResultColumn] = []
    for c in COMPARTMENTS:
        for f in FINDINGS:
            what = f"{FINDING_WORDS[f]}, {c} compartment"
            out.append(ResultColumn(f"finding_{f}_{c}", "float", "", f"{what}: 1 present, 0 not"))
            if f in GRADED:
                out.append(
                    ResultColumn(
                        f"finding_{f}_{c}_grade",
                        "float",
                        "1",
                        f"{what}: size grade 0 none, 1 < 33 %, 2 33-66 %, 3 > 66 % of subregion",
                    )
                )
        out += [
            ResultColumn(
                f"defect_{c}_area_mm2",
                "float",
                "mm2",
                f"denuded bone of the {c} tibial plate and central femoral condyle",
            ),
            ResultColumn(
                f"bml_{c}_volume_mm3", "float", "mm3", f"largest {c} bone-marrow lesion volume"
            ),
            ResultColumn(
                f"tear_{c}_volume_mm3",
                "float",
                "mm3",
                f"bright (torn) volume inside the {c} meniscus",
            ),
        ]
    return tuple(out)


FINDINGS_RESULTS: tuple[ResultColumn, ...] = _columns()
