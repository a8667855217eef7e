"""The generator's exact Wirth-Eckstein truth (synth.region_truth, KneeTruth.biomarkers).

Checked against the plate truth integrated independently (synth.truth.plate_surface_truth on
the same triangles), the region definitions (partitions, the 20 % central ellipse) and a
full-thickness lesion placed in one subregion.
"""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.core import we2008
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.params import Lesion, sample_knee_params
from kneescope.synth.region_truth import we2008_truth
from kneescope.synth.truth import plate_bone_triangles, plate_surface_truth

PLATE_CODE = {"medial_tibial": "MT", "lateral_tibial": "LT", "patellar": "P"}
FEMORAL_PLATES = ("cMF", "cLF", "TrMF", "TrLF", "pMF", "pLF")
VOLUMES = {
    "femoral": 14000.0,
    "medial_tibial": 1700.0,
    "lateral_tibial": 1800.0,
    "patellar": 1500.0,
}


@pytest.fixture(scope="module")
def lesioned() -> tuple[KneeShape, dict[str, float]]:
    """A KLG 3 knee with a full-thickness defect (radius 3 mm) at the centre of the medial
    tibial plate, and its truth."""
    params = sample_knee_params(np.random.default_rng(2), klg=3)
    lesion = Lesion(plate="medial_tibial", centre_mm=(-params.plateau_halfwidth_medial, 0.0),
                    radius_mm=3.0, depth=2.0)  # fmt: skip
    params = params.model_copy(update={"lesions": (lesion,)})
    shape = KneeShape.from_params(params)
    return shape, we2008_truth(shape, VOLUMES)


def test_truth_gives_every_we2008_column(lesioned: tuple[KneeShape, dict[str, float]]) -> None:
    _, truth = lesioned
    assert set(truth) == set(we2008.all_columns())
    assert all(np.isfinite(v) for v in truth.values())


def test_plates_agree_with_the_plate_truth(lesioned: tuple[KneeShape, dict[str, float]]) -> None:
    shape, truth = lesioned
    for plate in ("femoral", "medial_tibial", "lateral_tibial", "patellar"):
        pt = plate_surface_truth(
            plate, shape, VOLUMES[plate], triangles=plate_bone_triangles(plate, shape)
        )
        regions = FEMORAL_PLATES if plate == "femoral" else (PLATE_CODE[plate],)

        def total(q: str, regions: tuple[str, ...] = regions) -> float:
            return sum(truth[we2008.column(r, q)] for r in regions)

        assert total("tAB_mm2") == pytest.approx(pt.footprint_area_mm2, rel=1e-9)
        assert total("cAB_mm2") == pytest.approx(pt.area_mm2, rel=1e-9)
        assert total("VC_mm3") == pytest.approx(VOLUMES[plate], rel=1e-9)
        if plate != "femoral":
            code = PLATE_CODE[plate]
            assert truth[we2008.column(code, "ThCcAB_mm")] == pytest.approx(pt.thickness_mean_mm)
            assert truth[we2008.column(code, "ThCtAB_mm")] == pytest.approx(pt.thickness_mean_ab_mm)


def test_subregions_partition_their_plates(lesioned: tuple[KneeShape, dict[str, float]]) -> None:
    _, truth = lesioned

    def v(region: str, q: str) -> float:
        return truth[we2008.column(region, q)]

    for code in ("MT", "LT"):
        subs = [f"{s}{code}" for s in we2008.TIBIAL_SUBREGIONS]
        for q in ("tAB_mm2", "cAB_mm2", "VC_mm3"):
            assert sum(v(r, q) for r in subs) == pytest.approx(v(code, q), rel=1e-9)
        # the central ellipse holds 20 % of tAB (to the area of the triangles on its edge)
        assert v(f"c{code}", "tAB_mm2") / v(code, "tAB_mm2") == pytest.approx(0.2, abs=0.005)
        # the four outer subregions are each a sizeable share (diagonals of the bounding box)
        for s in "eiap":
            assert 0.1 < v(f"{s}{code}", "tAB_mm2") / v(code, "tAB_mm2") < 0.3
    for side in "ML":
        thirds = [f"{t}c{side}F" for t in we2008.FEMORAL_THIRDS]
        for q in ("tAB_mm2", "cAB_mm2", "VC_mm3"):
            assert sum(v(r, q) for r in thirds) == pytest.approx(v(f"c{side}F", q), rel=1e-9)
        for r in (*thirds, f"Tr{side}F", f"p{side}F"):
            assert v(r, "tAB_mm2") > 100.0


def test_full_thickness_lesion_is_denuded_bone_of_its_subregion(
    lesioned: tuple[KneeShape, dict[str, float]],
) -> None:
    _, truth = lesioned

    def v(region: str, q: str) -> float:
        return truth[we2008.column(region, q)]

    # the defect sits at the plate's centre: cMT is denuded, the other subregions are not
    assert v("cMT", "dABp_pct") > 5.0
    for s in "eiap":
        assert v(f"{s}MT", "dABp_pct") < 0.5
    assert v("LT", "dABp_pct") == 0.0
    # ThCtAB counts the denuded bone as 0: ThCtAB = ThCcAB x cAB / tAB
    assert v("cMT", "ThCtAB_mm") == pytest.approx(
        v("cMT", "ThCcAB_mm") * v("cMT", "cAB_mm2") / v("cMT", "tAB_mm2")
    )
    assert v("cMT", "ThCtAB_mm") < v("cMT", "ThCcAB_mm")


def test_aggregates_follow_the_chondrometrics_convention(
    lesioned: tuple[KneeShape, dict[str, float]],
) -> None:
    _, truth = lesioned

    def v(region: str, q: str) -> float:
        return truth[we2008.column(region, q)]

    for name, (tib, fem) in we2008.AGGREGATES.items():
        for q in ("ThCtAB_mm", "ThCcAB_mm", "tAB_mm2", "cAB_mm2", "VC_mm3"):
            assert v(name, q) == pytest.approx(v(tib, q) + v(fem, q))
        denuded = v(tib, "tAB_mm2") - v(tib, "cAB_mm2") + v(fem, "tAB_mm2") - v(fem, "cAB_mm2")
        assert v(name, "dABp_pct") == pytest.approx(100.0 * denuded / v(name, "tAB_mm2"))
