"""measure_knee on the toy knee, whose biomarkers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kneescope.biomarkers import KneeMeasurements, measure_knee
from kneescope.biomarkers.knee_phantom import (
    OBLIQUE_DEG,
    ToyKnee,
    render_compact_toy_knee,
    rotation_from_euler_deg,
)
from kneescope.biomarkers.measure_config import MeasureConfig, PlausibleRange
from kneescope.core import Volume
from kneescope.errors import InputError

PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")


def test_thickness_close_to_truth(toy_knee: ToyKnee, toy_measured: KneeMeasurements) -> None:
    for plate in PLATES:
        key = f"{plate}_cartilage_thickness_mean_mm"
        # square plate edges thin the nearest-surface thickness within ~1 mm of them
        assert toy_measured.values[key] == pytest.approx(toy_knee.truth[key], rel=0.08)
        median = toy_measured.values[f"{plate}_cartilage_thickness_median_mm"]
        assert median == pytest.approx(toy_knee.truth[key], rel=0.05)


def test_statistics_are_ordered(toy_measured: KneeMeasurements) -> None:
    v = toy_measured.values
    for plate in PLATES:
        pre = f"{plate}_cartilage_thickness"
        assert v[f"{pre}_p5_mm"] <= v[f"{pre}_median_mm"] <= v[f"{pre}_p95_mm"]
        assert v[f"{pre}_p95_mm"] <= v[f"{pre}_max_mm"]


def test_menisci_against_truth(toy_knee: ToyKnee, toy_measured: KneeMeasurements) -> None:
    for side in ("medial", "lateral"):
        key = f"{side}_meniscus_extrusion_mm"
        assert toy_measured.values[key] == pytest.approx(toy_knee.truth[key], abs=0.5)
        key = f"{side}_tibial_coverage_pct"
        assert toy_measured.values[key] == pytest.approx(toy_knee.truth[key], abs=5.0)


def test_denuded_area_found_where_it_is(toy_knee: ToyKnee, toy_measured: KneeMeasurements) -> None:
    truth = toy_knee.truth["medial_tibial_denuded_bone_area_mm2"]
    assert toy_measured.values["medial_tibial_denuded_bone_area_mm2"] == pytest.approx(
        truth, rel=0.15
    )
    # no defect on the others: at most a few mm^2 of edge noise
    for plate in ("femoral", "lateral_tibial", "patellar"):
        assert toy_measured.values[f"{plate}_denuded_bone_area_mm2"] < 5.0


def test_we2008_regions_partition_the_plates(toy_measured: KneeMeasurements) -> None:
    v = toy_measured.values

    def vc(region: str) -> float:
        return v[f"we2008_{region}_VC_mm3"]

    def tab(region: str) -> float:
        return v[f"we2008_{region}_tAB_mm2"]

    for plate, code in (("medial_tibial", "MT"), ("lateral_tibial", "LT")):
        subs = [f"{s}{code}" for s in "ceiap"]
        assert sum(vc(r) for r in subs) == pytest.approx(v[f"{plate}_cartilage_volume_mm3"])
        assert vc(code) == pytest.approx(v[f"{plate}_cartilage_volume_mm3"])
        assert sum(tab(r) for r in subs) == pytest.approx(tab(code))
        assert tab(code) == pytest.approx(v[f"{plate}_subchondral_bone_area_mm2"])
        # the central ellipse holds 20 % of tAB
        assert tab(f"c{code}") / tab(code) == pytest.approx(0.2, abs=0.01)
    fem = [f"{p}{s}F" for p in ("c", "Tr", "p") for s in "ML"]
    assert sum(vc(r) for r in fem) == pytest.approx(v["femoral_cartilage_volume_mm3"])
    for s in "ML":
        thirds = [f"{t}c{s}F" for t in "eci"]
        assert sum(tab(r) for r in thirds) == pytest.approx(tab(f"c{s}F"))
        assert sum(vc(r) for r in thirds) == pytest.approx(vc(f"c{s}F"))
    for r in fem:
        assert vc(r) > 0
        assert 1.5 < v[f"we2008_{r}_ThCcAB_mm"] < 2.3


def test_areas(toy_knee: ToyKnee, toy_measured: KneeMeasurements) -> None:
    v = toy_measured.values
    # medial plate: ellipse 13 x 18 mm (bone interface + the 4 mm denuded disc)
    assert v["medial_tibial_subchondral_bone_area_mm2"] == pytest.approx(
        math.pi * 13 * 18, rel=0.05
    )
    assert v["lateral_tibial_subchondral_bone_area_mm2"] == pytest.approx(
        math.pi * 12 * 16, rel=0.05
    )
    # the articular surface adds the plate's side wall: area + perimeter * thickness
    assert (
        v["lateral_tibial_cartilage_articular_area_mm2"]
        > v["lateral_tibial_subchondral_bone_area_mm2"]
    )


def test_result_row_is_flat_with_units(toy_measured: KneeMeasurements) -> None:
    row = toy_measured.as_row()
    assert row["side"] == "right"
    for key, value in row.items():
        assert isinstance(value, (bool, int, float, str))
        if isinstance(value, float) and not key.startswith("qc_"):
            assert key.endswith(("_mm", "_mm2", "_mm3", "_pct")), key
    assert toy_measured.qc["qc_ok"] is True


def test_maps_share_one_frame(toy_measured: KneeMeasurements) -> None:
    fem = toy_measured.maps["femoral"]
    assert fem.thickness_mm.shape == (180, 100)
    values = fem.thickness_mm[np.isfinite(fem.thickness_mm)]
    assert values.size > 500
    assert np.median(values) == pytest.approx(2.0, abs=0.1)


def test_left_knee_maps_mirror_into_the_right_frame(toy_measured: KneeMeasurements) -> None:
    left = measure_knee(
        render_compact_toy_knee(side="left", rotation=rotation_from_euler_deg(*OBLIQUE_DEG)).labels
    )
    assert left.side == "left" and left.side_from_anatomy == "left"
    right_map = toy_measured.maps["medial_tibial"].thickness_mm
    left_map = left.maps["medial_tibial"].thickness_mm
    both = np.isfinite(right_map) & np.isfinite(left_map)
    # same footprint pixels (not mirrored): the medial plate lands on the same side
    assert both.sum() > 0.9 * np.isfinite(right_map).sum()


def test_refuses_images_and_missing_bones(toy_knee: ToyKnee) -> None:
    image = toy_knee.labels.with_array(toy_knee.labels.array.astype(np.float32))
    with pytest.raises(InputError, match="integer"):
        measure_knee(image)
    no_femur = np.where(toy_knee.labels.array == 1, 0, toy_knee.labels.array).astype(np.uint8)
    with pytest.raises(InputError, match="femur"):
        measure_knee(toy_knee.labels.with_array(no_femur))


def test_missing_plate_gives_nan_and_flag(toy_knee: ToyKnee) -> None:
    arr = toy_knee.labels.array.copy()
    arr[arr == 7] = 0
    m = measure_knee(Volume(arr, toy_knee.labels.affine_ras), "right")
    assert math.isnan(m.values["patellar_cartilage_thickness_mean_mm"])
    assert m.values["patellar_cartilage_volume_mm3"] == 0.0
    assert m.qc["qc_missing_patellar_cartilage"] is True
    assert m.qc["qc_ok"] is False


def test_extra_component_and_side_mismatch(toy_knee: ToyKnee) -> None:
    arr = toy_knee.labels.array.copy()
    arr[2:8, 2:12, 60:70] = 8  # a stray meniscus fragment in a corner
    m = measure_knee(Volume(arr, toy_knee.labels.affine_ras), "left")
    assert m.qc["qc_extra_components_medial_meniscus"] == 1
    assert m.qc["qc_side_mismatch"] is True
    assert m.side == "left" and m.side_from_anatomy == "right"


def test_implausible_thickness_flagged(toy_knee: ToyKnee) -> None:
    strict = MeasureConfig(thickness_mean_range_mm=PlausibleRange(low=0.5, high=2.6))
    m = measure_knee(toy_knee.labels, config=strict, with_maps=False)
    assert m.qc["qc_implausible_thickness_patellar"] is True  # 3 mm
    assert m.qc["qc_implausible_thickness_femoral"] is False  # 2 mm
    assert not m.maps


def test_without_patella_the_side_must_be_given(
    toy_knee: ToyKnee, toy_measured: KneeMeasurements
) -> None:
    arr = toy_knee.labels.array.copy()
    arr[(arr == 6) | (arr == 7)] = 0
    with pytest.raises(InputError, match="right from left"):
        measure_knee((arr, toy_knee.labels.affine_ras), "auto")
    m = measure_knee((arr, toy_knee.labels.affine_ras), "right", with_maps=False)
    assert m.side == "right" and m.side_from_anatomy is None
    assert m.qc["qc_side_unverified"] is True
    # the frame from the declared side matches the anatomical one: same tibial subregions
    for region in ("aMT", "pMT", "iMT", "eMT"):
        key = f"we2008_{region}_VC_mm3"
        assert m.values[key] == pytest.approx(toy_measured.values[key], rel=0.01)


def test_implausible_volume_flagged_and_unknown_labels_refused(toy_knee: ToyKnee) -> None:
    narrow = {"medial_meniscus": PlausibleRange(low=500.0, high=1000.0)}
    m = measure_knee(
        Volume(toy_knee.labels.array, toy_knee.labels.affine_ras, {"side": "right"}),
        config=MeasureConfig(volume_ranges_mm3=narrow),
        with_maps=False,
    )
    assert m.values["medial_meniscus_volume_mm3"] > 1000.0
    assert m.qc["qc_implausible_volume_medial_meniscus"] is True
    assert "qc_implausible_volume_femoral_cartilage" not in m.qc  # not configured
    assert m.qc["qc_ok"] is False
    arr = toy_knee.labels.array.copy()
    arr[0:3, 0:3, 0:3] = 12  # a label kneescope does not define: not a kneescope label map
    with pytest.raises(InputError, match=r"0\.\.12.*0\.\.9"):
        measure_knee(Volume(arr, toy_knee.labels.affine_ras), "right", with_maps=False)


def test_bone_volumes_against_closed_form_and_unmoved_by_cartilage_loss() -> None:
    """The toy's patella is a sphere (4/3 pi r^3), its tibia an elliptic cylinder of which the
    field of view holds the top part (pi r_m r_a x the height inside the grid); taking the
    femoral cartilage away (denuded bone) leaves every bone volume as it was."""
    from kneescope.biomarkers.knee_phantom import PATELLA_RADIUS_MM, TIBIA_RADII_MM

    toy = render_compact_toy_knee()
    v = measure_knee(toy.labels, with_maps=False).values
    r = PATELLA_RADIUS_MM
    assert v["patella_bone_volume_mm3"] == pytest.approx(4.0 / 3.0 * math.pi * r**3, rel=0.005)
    affine = toy.labels.affine_ras  # axis-aligned: k is superior, the plateau at s = 0
    z = affine[2, 3] + affine[2, 2] * np.arange(toy.labels.array.shape[2])
    height = float(((z < 0.0) & (z > -45.0)).sum()) * affine[2, 2]
    assert height < 45.0  # the grid cuts the shaft: the volume inside the field of view
    tibia = math.pi * TIBIA_RADII_MM[0] * TIBIA_RADII_MM[1] * height
    assert v["tibia_bone_volume_mm3"] == pytest.approx(tibia, rel=0.01)
    assert v["femur_bone_volume_mm3"] > v["tibia_bone_volume_mm3"] > v["patella_bone_volume_mm3"]
    denuded = toy.labels.array.copy()
    denuded[denuded == 2] = 0
    worn = measure_knee(Volume(denuded, affine, {"side": "right"}), with_maps=False).values
    for bone in ("femur", "tibia", "patella"):
        key = f"{bone}_bone_volume_mm3"
        assert worn[key] == v[key], key
    assert worn["femoral_cartilage_volume_mm3"] == 0.0
