"""Meniscal extrusion is refused (NaN, a QC flag and its reason) on grids too coarse to
measure it, and a NaN biomarker always fails ``qc_ok``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kneescope.biomarkers import KneeMeasurements, MeasureConfig, measure_knee
from kneescope.biomarkers.knee_phantom import ToyKnee
from kneescope.core import Volume

EXTRUSIONS = ("medial_meniscus_extrusion_mm", "lateral_meniscus_extrusion_mm")


def coarsened(volume: Volume, step: tuple[int, int, int]) -> Volume:
    """Every ``step``-th voxel: the same knee sampled on a grid ``step`` times coarser."""
    arr = np.ascontiguousarray(volume.array[:: step[0], :: step[1], :: step[2]])
    affine = volume.affine_ras.copy()
    affine[:3, :3] = affine[:3, :3] * np.asarray(step, dtype=np.float64)[None, :]
    return Volume(arr, affine, volume.metadata)


def test_extrusion_refused_on_a_small_synth_like_grid(toy_knee: ToyKnee) -> None:
    # 0.8 x 0.5 x 0.5 mm -> 2.4 x 1.0 x 1.0 mm, about the synth "small" grid
    m = measure_knee(coarsened(toy_knee.labels, (3, 2, 2)), with_maps=False)
    for key in EXTRUSIONS:
        assert math.isnan(m.values[key]), key
    assert m.qc["qc_extrusion_grid_too_coarse"] is True
    assert "extrusion needs at most" in m.reasons["qc_extrusion_grid_too_coarse"]
    assert m.qc["qc_unmeasured_values"] >= 2
    assert m.qc["qc_ok"] is False
    row = m.as_row()
    assert "extrusion_grid_too_coarse" in row["qc_reasons"]
    # what the grid can still tell stays measured
    assert math.isfinite(m.values["medial_tibial_coverage_pct"])
    assert math.isfinite(m.values["femoral_cartilage_thickness_mean_mm"])


def test_extrusion_measured_on_a_fine_grid(
    toy_knee: ToyKnee, toy_measured: KneeMeasurements
) -> None:
    assert toy_measured.qc["qc_extrusion_grid_too_coarse"] is False
    assert toy_measured.qc["qc_unmeasured_values"] == 0
    for key in EXTRUSIONS:
        assert toy_measured.values[key] == pytest.approx(toy_knee.truth[key], abs=0.5)


def test_extrusion_limit_is_the_configured_one(toy_knee: ToyKnee) -> None:
    strict = MeasureConfig(extrusion_max_spacing_mm=0.5)
    m = measure_knee(toy_knee.labels, config=strict, with_maps=False)
    assert m.qc["qc_extrusion_grid_too_coarse"] is True
    assert all(math.isnan(m.values[key]) for key in EXTRUSIONS)
    assert "at most 0.5 x" in m.reasons["qc_extrusion_grid_too_coarse"]


def test_any_nan_biomarker_fails_qc_ok_whatever_made_it() -> None:
    # the guarantee is structural: it holds for a result built by any code, not one flag
    m = KneeMeasurements(
        values={"femoral_cartilage_thickness_mean_mm": 2.0, "new_biomarker_mm": math.nan},
        qc={"qc_missing_femur": False, "qc_ok": True},
        side="right",
        side_from_anatomy="right",
    )
    assert m.qc["qc_unmeasured_values"] == 1
    assert m.qc["qc_ok"] is False
    assert "new_biomarker_mm" in m.reasons["qc_unmeasured_values"]
    clean = KneeMeasurements({"a_mm": 1.0}, {"qc_side_unverified": True}, "left", None)
    assert clean.qc["qc_ok"] is True  # informative flag only, every value a number
