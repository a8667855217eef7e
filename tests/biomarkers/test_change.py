"""Precision and change arithmetic (kneescope.biomarkers.change) and synthetic rescans
(kneescope.synth.rescan): known inputs, the definitions written out, the shipped table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kneescope.biomarkers.change import (
    SDC_FACTOR,
    Precision,
    PrecisionTable,
    change_from_baseline,
    rescan_precision,
    sdc95,
    shipped_precision,
    standardised_response_mean,
    thickness_change_columns,
)
from kneescope.errors import InputError
from kneescope.synth.params import SMALL, sample_knee_params
from kneescope.synth.rescan import SCAN_FIELDS, rescan_params


def test_rescan_precision_is_the_rms_over_knees_of_sd_and_cv() -> None:
    # knee 1: 1, 2, 3 (SD 1, mean 2, CV 50 %); knee 2: 10, 10, 13 (SD sqrt(3), mean 11)
    knees = [[{"a": 1.0}, {"a": 2.0}, {"a": 3.0}], [{"a": 10.0}, {"a": 10.0}, {"a": 13.0}]]
    p = rescan_precision(knees)["a"]
    assert p.sd == pytest.approx(math.sqrt((1.0 + 3.0) / 2))
    cv2 = 100 * math.sqrt(3.0) / 11.0
    assert p.cv_pct == pytest.approx(math.sqrt((50.0**2 + cv2**2) / 2))
    assert (p.knees, p.scans) == (2, 3)


def test_rescan_precision_leaves_out_unmeasured_knees_and_zero_means() -> None:
    knees = [
        [{"a": 1.0, "z": 0.0}, {"a": 1.2, "z": 0.0}],
        [{"a": math.nan, "z": 0.0}, {"a": 2.0, "z": 0.0}],
    ]
    got = rescan_precision(knees)
    assert got["a"].knees == 1
    assert got["a"].sd == pytest.approx(float(np.std([1.0, 1.2], ddof=1)))
    assert got["z"].sd == 0.0 and math.isnan(got["z"].cv_pct)  # no CV of a zero mean
    with pytest.raises(InputError, match="2 or more"):
        rescan_precision([[{"a": 1.0}]])


def test_sdc_and_change_from_baseline() -> None:
    assert sdc95(0.01) == pytest.approx(1.96 * math.sqrt(2) * 0.01)
    table = PrecisionTable({"t": Precision(0.02, 1.0, 4, 4)}, "test SDs")
    visits = [{"t": 2.0}, {"t": 1.97}, {"t": 1.8}]
    rows = change_from_baseline(visits, ["t", "missing"], table)
    by = {(r.visit, r.biomarker): r for r in rows}
    assert by[(0, "t")].change == 0.0 and not by[(0, "t")].exceeds_sdc
    assert by[(1, "t")].change == pytest.approx(-0.03)
    assert by[(1, "t")].change_pct == pytest.approx(-1.5)
    sdc = SDC_FACTOR * 0.02  # 0.0554 mm
    assert by[(1, "t")].sdc95 == pytest.approx(sdc)
    assert not by[(1, "t")].exceeds_sdc  # 0.03 < 0.0554
    assert by[(2, "t")].exceeds_sdc  # 0.2 > 0.0554
    assert math.isnan(by[(2, "missing")].value) and not by[(2, "missing")].exceeds_sdc
    with pytest.raises(InputError, match="2 or more visits"):
        change_from_baseline(visits[:1], ["t"], table)


def test_standardised_response_mean() -> None:
    mean, sd, srm, n = standardised_response_mean([-0.1, -0.2, -0.3, math.nan])
    assert (mean, n) == (pytest.approx(-0.2), 3)
    assert sd == pytest.approx(0.1)
    assert srm == pytest.approx(-2.0)
    assert math.isnan(standardised_response_mean([-0.1])[2])


def test_thickness_change_columns() -> None:
    names = [
        "we2008_MT_ThCtAB_mm",
        "we2008_MT_VC_mm3",
        "we2008_cMT_ThCcAB_mm",
        "medial_tibial_cartilage_thickness_mean_mm",
        "medial_tibial_cartilage_thickness_max_mm",
        "qc_ok",
    ]
    assert thickness_change_columns(names) == [names[0], names[2], names[3]]


def test_precision_table_round_trip_and_refusals(tmp_path: Path) -> None:
    table = PrecisionTable(
        {"a_mm": Precision(0.01, 0.5, 4, 4), "z_mm2": Precision(0.0, math.nan, 4, 4)}, "src"
    )
    path = tmp_path / "p.json"
    path.write_text(table.to_json(), encoding="utf-8")
    back = PrecisionTable.read(path)
    assert back.columns["a_mm"] == table.columns["a_mm"]
    assert math.isnan(back.columns["z_mm2"].cv_pct)
    assert back.source.startswith("src") and str(path) in back.source
    for text, said in (
        ("{not json", "not JSON"),
        ('{"columns": {}}', "'source'"),
        ('{"source": "x", "columns": {"a": {"sd": "big"}}}', "needs numbers"),
        ('{"source": "x", "columns": {"a": {"sd": -1, "knees": 1, "scans": 2}}}', ">= 0"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=said):
            PrecisionTable.read(path)
    with pytest.raises(InputError, match="does not exist"):
        PrecisionTable.read(tmp_path / "none.json")


def test_shipped_precision_covers_the_plate_thickness() -> None:
    table = shipped_precision()
    assert "synthetic" in table.source and "biomarker_precision.py" in table.source
    for plate in ("femoral", "medial_tibial", "lateral_tibial", "patellar"):
        p = table.columns[f"{plate}_cartilage_thickness_mean_mm"]
        assert 0.0 < p.sd < 0.05 and p.knees >= 4 and p.scans >= 4


def test_rescan_keeps_the_knee_and_changes_the_scan() -> None:
    knee = sample_knee_params(np.random.default_rng(3), klg=3, side="left")
    assert rescan_params(knee, 0) == knee
    one, two = rescan_params(knee, 1), rescan_params(knee, 2)
    assert rescan_params(knee, 1) == one  # deterministic
    for scan in (one, two):
        same = {k: v for k, v in scan.model_dump().items() if k not in SCAN_FIELDS}
        assert same == {k: v for k, v in knee.model_dump().items() if k not in SCAN_FIELDS}
        assert all(getattr(scan, f) != getattr(knee, f) for f in SCAN_FIELDS)
    assert all(getattr(one, f) != getattr(two, f) for f in SCAN_FIELDS)
    with pytest.raises(InputError):
        rescan_params(knee, -1)


def test_a_rendered_rescan_is_the_same_knee_in_a_new_pose() -> None:
    from kneescope.synth.knee import render_knee

    knee = sample_knee_params(np.random.default_rng(0), klg=2)
    first, again = render_knee(knee, SMALL), render_knee(rescan_params(knee, 1), SMALL)
    assert not np.array_equal(first.labels.affine_ras, again.labels.affine_ras)
    assert not np.array_equal(first.image.array, again.image.array)
    for plate, truth in first.truth.plates.items():  # the same cartilage
        assert again.truth.plates[plate].thickness_mean_mm == truth.thickness_mean_mm
    for label in ("2", "4", "5", "7", "8", "9"):  # cartilage and menisci wholly in view
        a, b = first.truth.label_volumes_mm3[label], again.truth.label_volumes_mm3[label]
        assert abs(b / a - 1.0) < 0.03  # the same volumes (sampled on 2.3 mm slices: ~1 %)
