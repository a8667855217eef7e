"""The demo's check against the synthetic truth: exact errors on a real synthetic cohort.

A results table is made from the cohort's own truth with known offsets (thickness +0.10 mm,
volumes +10 %, extrusion -0.50 mm) and label maps whose Dice is known (the true map: 1.0;
the true map without femoral cartilage: 0.0 for that structure, 1.0 for the others).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kneescope.cli.demo_truth import (
    KNEE_TRUTH,
    TRUTH_COLUMNS,
    check_against_truth,
    check_rows,
    labels_on_grid,
)
from kneescope.core import Volume
from kneescope.core.labels import KNEE_LABELS
from kneescope.errors import InputError
from kneescope.io import read_volume, write_nifti
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.generate import generate_cohort

FEMORAL = next(v for v, n in KNEE_LABELS.labels.items() if n == "femoral_cartilage")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("truth") / "cohort"
    spec = CohortSpec(
        subjects=1, visits=("V00",), size="small", seed=11, radiographs=False, full_leg=False
    )
    generate_cohort(spec, out, jobs=2)
    return out


def _truth_rows(cohort: Path) -> list[dict[str, str]]:
    with (cohort / KNEE_TRUTH).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _results(cohort: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """Right knee: QC ok, the true label map; left knee: QC failed, no femoral cartilage."""
    rows = []
    for truth in _truth_rows(cohort):
        row: dict[str, Any] = {
            "subject": truth["ParticipantID"],
            "visit": truth["Visit"],
            "side": truth["Side"],
        }
        for column in TRUTH_COLUMNS:
            if column.key != column.result:
                continue  # the thickness against the visible truth: the same result column
            true = float(truth[column.truth])
            if column.result.endswith("thickness_mean_mm"):
                row[column.result] = true + 0.10
            elif column.result.endswith("extrusion_mm"):
                row[column.result] = true - 0.50
            elif column.unit == "%":
                row[column.result] = true * 1.10
            else:
                row[column.result] = true + 2.0  # denuded area, mm2
        labels_path = cohort / truth["LabelPath"]
        if truth["Side"] == "right":
            row["qc_ok"], row["qc_reasons"] = True, ""
        else:
            labels = read_volume(labels_path)
            broken = labels.array.copy()
            broken[broken == FEMORAL] = 0
            labels_path = tmp_path / "left.nii.gz"
            write_nifti(Volume(broken, labels.affine_ras), labels_path)
            row["qc_ok"], row["qc_reasons"] = False, "missing_femoral_cartilage: no cartilage"
        row["file_segment_labels"] = str(labels_path)
        rows.append(row)
    rows.append({"subject": "9999999", "visit": "V00", "side": "right", "qc_ok": True})
    return rows


def test_errors_and_dice_are_exact_and_summaries_leave_out_qc_failed_knees(
    cohort: Path, tmp_path: Path
) -> None:
    check = check_against_truth(_results(cohort, tmp_path), cohort)
    assert [k.side for k in check.passed] == ["right"]
    assert [k.side for k in check.failed] == ["left"]
    assert check.without_truth == ["9999999 V00 right"]

    right, left = check.passed[0], check.failed[0]
    assert all(d == 1.0 for d in right.dice.values()) and len(right.dice) == 9
    assert left.dice["femoral_cartilage"] == 0.0
    assert all(d == 1.0 for s, d in left.dice.items() if s != "femoral_cartilage")
    truths = {r["Side"]: r for r in _truth_rows(cohort)}
    for knee in (right, left):
        for column in TRUTH_COLUMNS:
            error = knee.errors[column.key]
            if column.key.endswith("_vs_visible"):
                plate = column.result.removesuffix("_cartilage_thickness_mean_mm")
                row = truths[knee.side]
                visible = float(row[f"{plate}_ThMean_mm"]) + 0.10 - float(row[column.truth])
                assert error == pytest.approx(visible, abs=1e-9)
            elif column.result.endswith("thickness_mean_mm"):
                assert error == pytest.approx(0.10, abs=1e-9)
            elif column.result.endswith("extrusion_mm"):
                assert error == pytest.approx(-0.50, abs=1e-9)
            elif column.unit == "%":
                assert error == pytest.approx(10.0, abs=1e-6)
            else:
                assert error == pytest.approx(2.0, abs=1e-9)

    # summaries over the one QC-passed knee only
    assert check.dice["femoral_cartilage"]["mean"] == 1.0
    assert check.dice["femoral_cartilage"]["n"] == 1
    femoral = check.errors["femoral_cartilage_thickness_mean_mm"]
    assert femoral["n"] == 1 and femoral["mean"] == pytest.approx(0.10)
    assert check.errors["medial_meniscus_extrusion_mm"]["bias"] == pytest.approx(-0.50)

    summary = check.to_dict()
    assert (summary["qc_passed"], summary["qc_failed"]) == (1, 1)
    assert [k["qc"] for k in summary["per_knee"]] == ["ok", "failed"]
    rows = check_rows(check)
    assert rows and all(r["qc"] in ("ok", "failed") for r in rows)
    dice_left = next(
        r for r in rows if r["side"] == "left" and r["quantity"] == "dice_femoral_cartilage"
    )
    assert dice_left["measured"] == 0.0 and dice_left["qc"] == "failed"


def test_a_label_map_in_another_axis_order_is_compared_voxel_for_voxel(cohort: Path) -> None:
    truth = read_volume(cohort / _truth_rows(cohort)[0]["LabelPath"])
    n = np.array(truth.shape)
    # the same voxels stored as (k, i, j) with axis i reversed
    array = np.transpose(truth.array[::-1], (2, 0, 1))
    index_to_truth = np.zeros((4, 4))  # pred index (a, b, c) -> truth index (n0-1-b, c, a)
    index_to_truth[0, 1], index_to_truth[0, 3] = -1.0, n[0] - 1
    index_to_truth[1, 2] = 1.0
    index_to_truth[2, 0] = 1.0
    index_to_truth[3, 3] = 1.0
    pred = Volume(np.ascontiguousarray(array), truth.affine_ras @ index_to_truth)
    assert np.array_equal(labels_on_grid(pred, truth), truth.array)

    shifted = truth.affine_ras.copy()
    shifted[:3, 3] += truth.affine_ras[:3, 0]  # one voxel along i: another grid
    with pytest.raises(InputError, match="not on the grid"):
        labels_on_grid(Volume(truth.array, shifted), truth)


def test_missing_truth_table_is_one_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="synthetic truth"):
        check_against_truth([], tmp_path)
