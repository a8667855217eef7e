"""Attacks on `kneescope measure`: label maps that are wrong in ways a
reader cannot see must never come back ``qc_ok`` — swapped bones, cartilage off its bone, a
header without orientation or spacing — and a NaN biomarker always fails ``qc_ok``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from kneescope.biomarkers.knee_phantom import (
    OBLIQUE_DEG,
    ToyKnee,
    render_compact_toy_knee,
    rotation_from_euler_deg,
)
from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.io import write_volume


@pytest.fixture(scope="module")
def toy() -> ToyKnee:
    return render_compact_toy_knee(rotation=rotation_from_euler_deg(*OBLIQUE_DEG))


def _relabelled(arr: np.ndarray, swap: dict[int, int]) -> np.ndarray:
    out = arr.copy()
    for old, new in swap.items():
        out[arr == old] = new
    return out


def _measure_rows(paths: list[Path], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["measure", *map(str, paths), "--json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def _plain(toy: ToyKnee, arr: np.ndarray, path: Path) -> Path:
    # no side in the metadata: as a label map from another tool, nothing to contradict
    return write_volume(Volume(arr, toy.labels.affine_ras), path)


def test_swapped_femur_and_tibia_is_flagged(
    toy: ToyKnee, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    swapped = _relabelled(toy.labels.array, {1: 3, 3: 1})
    (row,) = _measure_rows([_plain(toy, swapped, tmp_path / "swapped.nii.gz")], capsys)
    assert row["qc_ok"] is False
    assert row["qc_femur_below_tibia"] is True
    assert row["qc_cartilage_off_bone_femoral"] is True
    assert row["qc_cartilage_off_bone_medial_tibial"] is True
    assert "femur_below_tibia" in row["qc_reasons"]


def test_cartilage_plates_swapped_between_bones_is_flagged(
    toy: ToyKnee, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    swapped = _relabelled(toy.labels.array, {2: 4, 4: 2})
    (row,) = _measure_rows([_plain(toy, swapped, tmp_path / "plates.nii.gz")], capsys)
    assert row["qc_ok"] is False
    assert row["qc_cartilage_off_bone_femoral"] is True
    assert row["qc_cartilage_off_bone_medial_tibial"] is True
    assert row["qc_cartilage_off_bone_lateral_tibial"] is False


def test_every_row_with_a_missing_value_fails_qc(
    toy: ToyKnee, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arr = toy.labels.array
    variants = {
        "intact": arr,
        "swapped": _relabelled(arr, {1: 3, 3: 1}),
        "no_lateral_meniscus": _relabelled(arr, {9: 0}),
        "no_patellar_cartilage": _relabelled(arr, {7: 0}),
    }
    paths = [_plain(toy, a, tmp_path / f"{name}.nii.gz") for name, a in variants.items()]
    rows = _measure_rows(paths, capsys)
    nulls_seen = 0
    for row in rows:
        nulls = [k for k, v in row.items() if v is None]
        nulls_seen += len(nulls)
        assert row["qc_unmeasured_values"] == len(nulls), row["labelmap"]
        if nulls:
            assert row["qc_ok"] is False, (row["labelmap"], nulls)
    assert nulls_seen > 0
    assert rows[0]["qc_ok"] is True  # the intact knee


def _nifti_without_orientation(toy: ToyKnee, path: Path, pixdim: float) -> Path:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(toy.labels.array, None, header)
    img.header["pixdim"][1:4] = pixdim
    img.header.set_sform(None, code=0)
    img.header.set_qform(None, code=0)
    nib.save(img, path)
    return path


def test_header_without_orientation_never_gives_a_confident_side(
    toy: ToyKnee, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _nifti_without_orientation(toy, tmp_path / "no_orientation.nii", 0.6)
    (row,) = _measure_rows([path], capsys)
    assert row["qc_orientation_unknown"] is True
    assert row["side_from_anatomy"] == ""
    assert row["qc_ok"] is False
    assert "orientation" in row["qc_reasons"]


def test_header_with_zero_pixdim_is_refused(
    toy: ToyKnee, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _nifti_without_orientation(toy, tmp_path / "pixdim0.nii", 0.0)
    assert main(["measure", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "pixdim" in lines[0]
