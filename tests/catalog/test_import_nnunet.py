"""`kneescope ingest DatasetNNN_Name`: an nnU-Net v2 dataset into the catalog; kneescope's own
export round-trips (export -> ingest -> export: same cases, voxels and sides)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.core.labels import KNEE_LABELS
from kneescope.io.nifti import read_nifti, write_nifti
from kneescope.io.nnunet_dataset import NnunetCaseData, write_nnunet_dataset


def _case(n: int, subject: str, visit: str, side: str) -> NnunetCaseData:
    rng = np.random.default_rng(n)
    affine = affine_from_axes([n, 2.0, -3.0], np.eye(3)[:, [2, 0, 1]], (0.7, 0.4, 0.4))
    labels = rng.integers(0, 10, size=(8, 9, 7)).astype(np.uint8)
    image = rng.integers(0, 900, size=(8, 9, 7)).astype(np.int16)
    info = {"subject": subject, "visit": visit, "side": side}
    return NnunetCaseData(f"{subject}_{visit}_{side}", Volume(image, affine),
                          Volume(labels, affine), info)  # fmt: skip


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_export_ingest_export_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [_case(1, "9000001", "V00", "right"), _case(2, "9000001", "V01", "left")]
    first = tmp_path / "raw1" / "Dataset011_kneescope"
    first.parent.mkdir()
    write_nnunet_dataset(first, cases, labels=KNEE_LABELS.labels)

    ws = ["-w", str(tmp_path / "ws")]
    report = _json(capsys, "ingest", str(first), *ws)
    assert isinstance(report, dict)
    assert (report["kind"], report["added"], report["labels"]) == ("nnunet", 2, 2)
    rows = _json(capsys, "catalog", *ws)
    assert isinstance(rows, list)
    assert sorted((r["subject"], r["visit"], r["side"]) for r in rows) == [
        ("9000001", "V00", "right"), ("9000001", "V01", "left")
    ]  # fmt: skip
    again = _json(capsys, "ingest", str(first), *ws)
    assert isinstance(again, dict) and again["unchanged"] == 2

    (tmp_path / "raw2").mkdir()
    out = _json(capsys, "export", "--format", "nnunet", "--dataset-id", "12", "-o",
                str(tmp_path / "raw2"), *ws)  # fmt: skip
    assert isinstance(out, dict)
    assert out["case_ids"] == ["9000001_V00_right", "9000001_V01_left"]
    second = Path(out["folder"])
    for case in cases:
        image = read_nifti(second / "imagesTr" / f"{case.case_id}_0000.nii.gz")
        labels = read_nifti(second / "labelsTr" / f"{case.case_id}.nii.gz")
        assert np.array_equal(image.array, case.image.array)
        assert np.array_equal(labels.array, case.labels.array)
        assert np.allclose(labels.affine_ras, case.image.affine_ras, atol=1e-6)
    meta = json.loads((second / "dataset.json").read_text())
    assert meta["kneescope"]["cases"]["9000001_V01_left"]["side"] == "left"


def test_foreign_dataset_images_without_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dataset made for nnU-Net elsewhere: two channels, its own labels, sides.csv."""
    folder = tmp_path / "Dataset004_Other"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for n in (1, 2):
        case = _case(n, "x", "V00", "right")
        for channel in (0, 1):
            write_nifti(case.image, folder / "imagesTr" / f"knee{n}_{channel:04d}.nii.gz")
        write_nifti(case.labels.with_array(case.labels.array % 2),
                    folder / "labelsTr" / f"knee{n}.nii.gz")  # fmt: skip
    (folder / "sides.csv").write_text("name,side\nknee1,L\nknee2,R\n")
    meta = {
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(meta))
    ws = ["-w", str(tmp_path / "ws")]
    report = _json(capsys, "ingest", str(folder), *ws)
    assert isinstance(report, dict)
    assert (report["added"], report["labels"], report["failed"]) == (4, 0, 0)
    assert "are not kneescope's" in report["warnings"][0]
    rows = _json(capsys, "catalog", *ws)
    assert isinstance(rows, list)
    assert sorted((r["subject"], r["side"], r["sequence"]) for r in rows) == [
        ("knee1", "left", "T1"), ("knee1", "left", "T2"),
        ("knee2", "right", "T1"), ("knee2", "right", "T2"),
    ]  # fmt: skip
    assert all(not r["label_paths"] for r in rows)

    meta["numTraining"] = 5
    (folder / "dataset.json").write_text(json.dumps(meta))
    assert main(["ingest", str(folder), *ws]) == 2
    assert "numTraining is 5 but 2" in capsys.readouterr().err
