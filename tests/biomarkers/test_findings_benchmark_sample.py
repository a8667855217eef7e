"""The MRI-findings benchmark's stratified knee sample (issue 16): the small-defect stratum
(3.4 <= D < 3.8, where full-thickness defects start) that the validation of the defect
threshold needs, drawn without changing the other strata's knees."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from kneescope.synth.cohort import CohortSpec, plan_subject

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_small_defect_stratum_is_added_apart_from_the_other_strata() -> None:
    data = _script("mri_findings_data")
    seed, subjects = 16002, 60
    spec = CohortSpec(subjects=subjects, visits=("V00",), seed=seed)
    severity = {
        (i, side): visits[0].severity
        for i in range(subjects)
        for side, visits in plan_subject(spec, i).knees.items()
    }
    base = data.select(seed, subjects, 3, 3, 3)
    enriched = data.select(seed, subjects, 3, 3, 3, small=4)
    assert enriched[: len(base)] == base  # the high/mid/low knees do not depend on it
    extra = enriched[len(base) :]
    in_range = [k for k, d in severity.items() if 3.4 <= d < 3.8 and k not in base]
    assert len(extra) == min(4, len(in_range)) > 0
    assert len(set(enriched)) == len(enriched)
    assert all(3.4 <= severity[k] < 3.8 for k in extra)
