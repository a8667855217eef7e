"""Every Wirth-Eckstein (we2008_*) column measured from a synthetic knee's label map on the
OAI DESS grid, against the generator's exact truth (KneeTruth.biomarkers).

Tolerances are the largest errors measured over five knees (KLG 0-4, both sides) by
``benchmarks/biomarkers_regions.py`` plus about 20 %, per quantity and region kind, as stated
in docs/biomarkers.md ("Against the exact truth"). The wide subregion tolerances come from the
KLG 3-4 knees, whose cartilage thinner than half a voxel (truth: covered above 0.15 mm) the
label map cannot show: cAB reads low and dABp high there; KLG 0-2 knees stay far inside.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kneescope.biomarkers import measure_knee
from kneescope.core import we2008
from kneescope.synth.knee import render_knee
from kneescope.synth.params import sample_knee_params, size_spec

PLATES = {"MT", "LT", "P", "cMF", "cLF", "TrMF", "TrLF", "pMF", "pLF"}

# |error| in % of the truth (dABp: percentage points), per quantity and region kind
TOLERANCE: dict[str, dict[str, float]] = {
    "tAB_mm2": {"plate": 4.2, "subregion": 5.0, "aggregate": 2.5},
    "cAB_mm2": {"plate": 5.5, "subregion": 12.5, "aggregate": 5.0},
    "dABp_pct": {"plate": 5.0, "subregion": 11.5, "aggregate": 2.5},
    "ThCcAB_mm": {"plate": 2.0, "subregion": 14.0, "aggregate": 3.8},
    "ThCtAB_mm": {"plate": 7.0, "subregion": 17.0, "aggregate": 3.0},
    "VC_mm3": {"plate": 3.7, "subregion": 11.5, "aggregate": 2.5},
}


def _kind(region: str) -> str:
    if region in we2008.AGGREGATES:
        return "aggregate"
    return "plate" if region in PLATES else "subregion"


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "klg", "side"), [(0, 2, "right"), (1, 4, "left")])
def test_every_we2008_column_matches_exact_truth(seed: int, klg: int, side: str) -> None:
    params = sample_knee_params(np.random.default_rng(seed), klg=klg).model_copy(
        update={"side": side}
    )
    sample = render_knee(params, size_spec("full"))
    measured = measure_knee(sample.labels, side, with_maps=False)  # type: ignore[arg-type]
    truth = sample.truth.biomarkers
    failures = []
    for region in we2008.all_regions():
        for quantity in we2008.QUANTITIES:
            name = we2008.column(region, quantity)
            got, want = measured.values[name], truth[name]
            assert math.isfinite(got), name
            tol = TOLERANCE[quantity][_kind(region)]
            err = got - want if quantity == "dABp_pct" else 100.0 * (got - want) / want
            if abs(err) > tol:
                failures.append(f"{name}: measured {got:.3f}, truth {want:.3f} ({err:+.1f})")
    assert not failures, "; ".join(failures)
