"""Biomarkers do not depend on how the image grid lies: axis order, flips, world mirroring,
rigid rotations (hypothesis property tests, few examples: each measures a whole knee)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kneescope.biomarkers import KneeMeasurements, measure_knee
from kneescope.biomarkers.knee_phantom import (
    ToyKnee,
    render_compact_toy_knee,
    rotation_from_euler_deg,
)
from kneescope.core import Volume

SETTINGS = settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # shrinking re-measures whole knees: too slow
)


def _tolerance(key: str, value: float) -> float:
    """Allowed absolute difference between two measurements of the same voxels.

    Volumes are voxel counts (exact; subregion volumes within 2 %); surfaces come from
    marching cubes, which may split ambiguous cubes differently when the axes are reordered
    (plate areas within 0.3 % + 0.5 mm^2, subregion areas 2 % + 0.5 mm^2, denuded bone within
    0.3 % + 2 mm^2, two pixels of its raster; plate thickness means within 0.02 mm, subregion
    means within 0.05 mm, p5/p95/max within 0.1 mm, coverage within 0.5 points, a subregion's
    denuded share within 1.5 points).
    """
    if key.endswith("_dABp_pct"):
        return 1.5  # denuded share of a subregion: the 2 mm^2 of denuded bone below, of ~150
    if key.endswith("_pct"):
        return 0.5
    if key.endswith("_mm3"):
        whole = key.endswith(("cartilage_volume_mm3", "meniscus_volume_mm3"))
        # subregion volumes: voxels take the region of their nearest interface vertex
        return 1e-6 * max(1.0, abs(value)) if whole else 0.02 * abs(value)
    if key.endswith("denuded_bone_area_mm2"):
        # denuded bone is decided on a 1 mm raster of the flattened plate: when the knee frame
        # moves by rounding (another world pose), a hole's rim pixel can flip, 1-2 mm^2 at once
        # (hypothesis 6.170 found a pose at 1.6 mm^2 of 44 mm^2)
        return 0.003 * abs(value) + 2.0
    if key.endswith("_mm2"):
        # subregion areas: like subregion volumes, their borders move with the triangulation
        return (0.02 if key.startswith("we2008_") else 0.003) * abs(value) + 0.5
    if key.endswith(("cartilage_thickness_mean_mm", "cartilage_thickness_median_mm")):
        return 0.02  # mm, whole-plate summaries
    if key.endswith(("_p5_mm", "_p95_mm", "_max_mm")):
        return 0.1  # tails sit at the toy's square plate edges: most sensitive to triangulation
    return 0.05  # subregions: borders move with the triangulation


def assert_same(a: KneeMeasurements, b: KneeMeasurements) -> None:
    assert a.values.keys() == b.values.keys()
    for key, va in a.values.items():
        vb = b.values[key]
        if math.isnan(va) or math.isnan(vb):
            assert math.isnan(va) and math.isnan(vb), key
            continue
        assert abs(va - vb) <= _tolerance(key, va), (key, va, vb)
    # flags that read the world (patient) axes: a rotated world may put the femur below the
    # tibia, which is then rightly flagged; every other flag must agree
    world = ("qc_side_mismatch", "qc_femur_below_tibia")
    for key, qa in a.qc.items():
        if key not in (*world, "qc_ok"):
            assert b.qc[key] == qa, key
    if not any(b.qc[key] for key in world):
        assert b.qc["qc_ok"] == a.qc["qc_ok"]


@pytest.mark.slow  # the flipped-axis and rigid-rotation invariances stay in the default suite
@SETTINGS
@given(perm=st.permutations([0, 1, 2]))
def test_axis_permutation_with_permuted_spacing(
    toy_knee: ToyKnee, toy_measured: KneeMeasurements, perm: list[int]
) -> None:
    vol = toy_knee.labels
    affine = vol.affine_ras.copy()
    affine[:3, :3] = vol.affine_ras[:3, perm]
    permuted = Volume(np.ascontiguousarray(vol.array.transpose(perm)), affine, vol.metadata)
    assert permuted.spacing_mm == tuple(vol.spacing_mm[p] for p in perm)
    assert_same(toy_measured, measure_knee(permuted))


@SETTINGS
@given(axis=st.integers(0, 2))
def test_flipped_axis_same_world(
    toy_knee: ToyKnee, toy_measured: KneeMeasurements, axis: int
) -> None:
    vol = toy_knee.labels
    affine = vol.affine_ras.copy()
    n = vol.shape[axis]
    affine[:3, 3] += affine[:3, axis] * (n - 1)
    affine[:3, axis] *= -1.0
    flipped = Volume(np.ascontiguousarray(np.flip(vol.array, axis)), affine, vol.metadata)
    assert_same(toy_measured, measure_knee(flipped))


def test_mirrored_world_is_the_other_knee(
    toy_knee: ToyKnee, toy_measured: KneeMeasurements
) -> None:
    mirrored = toy_knee.labels.mirrored_lr()
    m = measure_knee(mirrored, "left")
    assert m.side_from_anatomy == "left"
    assert m.qc["qc_side_mismatch"] is False
    assert_same(toy_measured, m)


@SETTINGS
@given(
    angles=st.tuples(st.floats(-180, 180), st.floats(-90, 90), st.floats(-180, 180)),
)
def test_rigid_rotation_of_the_world(
    toy_knee: ToyKnee, toy_measured: KneeMeasurements, angles: tuple[float, float, float]
) -> None:
    rot = np.eye(4)
    rot[:3, :3] = rotation_from_euler_deg(*angles)
    rot[:3, 3] = [30.0, -12.0, 5.0]
    vol = toy_knee.labels
    moved = Volume(vol.array, rot @ vol.affine_ras, vol.metadata)
    assert_same(toy_measured, measure_knee(moved))


@pytest.mark.parametrize("angles", [(-10.0, 7.0, -4.0), (5.0, 14.0, 9.0)])
def test_resampled_in_another_pose(
    toy_measured: KneeMeasurements, angles: tuple[float, float, float]
) -> None:
    # a new voxelisation of the same knee in another oblique pose agrees within the stated
    # tolerance: thickness 0.1 mm, volumes 2 %, extrusion 0.5 mm, coverage 3 points
    other = measure_knee(
        render_compact_toy_knee(rotation=rotation_from_euler_deg(*angles)).labels,
        with_maps=False,
    )
    for plate in ("femoral", "medial_tibial", "lateral_tibial", "patellar"):
        key = f"{plate}_cartilage_thickness_mean_mm"
        assert abs(toy_measured.values[key] - other.values[key]) <= 0.1, key
        key = f"{plate}_cartilage_volume_mm3"
        assert abs(toy_measured.values[key] / other.values[key] - 1.0) <= 0.02, key
    for side in ("medial", "lateral"):
        key = f"{side}_meniscus_extrusion_mm"
        assert abs(toy_measured.values[key] - other.values[key]) <= 0.5, key
        key = f"{side}_tibial_coverage_pct"
        assert abs(toy_measured.values[key] - other.values[key]) <= 3.0, key
