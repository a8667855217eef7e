"""nnU-Net v2 raw datasets: kneescope's writer and reader, and nnU-Net's own documented
layouts (dataset_format.md: imagesTr/labelsTr with dataset.json, and the variant that lists
its files under ``dataset``)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.errors import InputError
from kneescope.io.nifti import write_nifti
from kneescope.io.nnunet_dataset import (
    NnunetCaseData,
    dataset_folder_name,
    read_nnunet_case,
    read_nnunet_dataset,
    write_nnunet_dataset,
)

LABELS = {1: "femur", 2: "femoral_cartilage", 3: "tibia"}


def _pair(seed: int) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(seed)
    affine = affine_from_axes([seed, -3.0, 7.0], np.eye(3)[:, [1, 0, 2]], (0.5, 0.4, 0.8))
    labels = rng.integers(0, 4, size=(6, 7, 5)).astype(np.uint8)
    image = rng.normal(100, 20, size=(6, 7, 5)).astype(np.float32)
    return Volume(image, affine), Volume(labels, affine)


def _cases(n: int) -> list[NnunetCaseData]:
    out = []
    for k in range(n):
        image, labels = _pair(k)
        out.append(NnunetCaseData(f"knee{k}_V00_right", image, labels, {"side": "right"}))
    return out


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    cases = _cases(2)
    folder = tmp_path / dataset_folder_name(7, "knees")
    dataset = write_nnunet_dataset(folder, iter(cases), labels=LABELS, extra={"version": "x"})
    assert folder.name == "Dataset007_knees"
    assert dataset.dataset_id == 7
    assert dataset.labels == {"background": 0, "femur": 1, "femoral_cartilage": 2, "tibia": 3}
    assert dataset.label_names() == LABELS
    assert [c.case_id for c in dataset.cases] == ["knee0_V00_right", "knee1_V00_right"]
    assert dataset.case_info("knee1_V00_right") == {"side": "right"}
    assert dataset.kneescope["version"] == "x"
    for case, truth in zip(dataset.cases, cases, strict=True):
        assert case.images[0].name == f"{truth.case_id}_0000.nii.gz"
        image, labels = read_nnunet_case(case)
        assert np.array_equal(image.array, truth.image.array)
        assert np.array_equal(labels.array, truth.labels.array)
        assert labels.array.dtype == np.uint8
        assert np.allclose(labels.affine_ras, truth.image.affine_ras, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries

    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_nnunet_dataset(folder, iter(cases), labels=LABELS)
    again = write_nnunet_dataset(folder, iter(cases[:1]), labels=LABELS, overwrite=True)
    assert len(again.cases) == 1


def test_bad_cases_leave_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "Dataset008_bad"
    image, labels = _pair(1)
    off_grid = Volume(labels.array, affine_from_axes([9.0, 0, 0], np.eye(3), (0.5, 0.4, 0.8)))
    unknown = labels.with_array(np.full(labels.shape, 5, np.uint8))
    bad = [
        (NnunetCaseData("a", image, off_grid), "geometry differs"),
        (NnunetCaseData("a", image, unknown), r"label values \[5\]"),
        (NnunetCaseData("a/b", image, labels), "use letters"),
    ]
    for case, message in bad:
        with pytest.raises(InputError, match=message):
            write_nnunet_dataset(folder, [case], labels=LABELS)
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="used twice"):
        write_nnunet_dataset(folder, [NnunetCaseData("a", image, labels)] * 2, labels=LABELS)
    with pytest.raises(InputError, match="without gaps"):
        write_nnunet_dataset(folder, [], labels={1: "femur", 3: "tibia"})
    with pytest.raises(InputError, match="DatasetNNN_Name"):
        write_nnunet_dataset(tmp_path / "knees", [], labels=LABELS)
    assert list(tmp_path.iterdir()) == []


def _nnunet_example(folder: Path, *, listed: bool = False) -> None:
    """A dataset as nnU-Net's dataset_format.md shows it (Dataset002_Heart: one MRI channel,
    'left atrium' as label 1), written with nibabel-level tools, not kneescope's writer."""
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "imagesTs").mkdir()
    for n in (3, 4):
        image, labels = _pair(n)
        write_nifti(image, folder / "imagesTr" / f"la_{n:03d}_0000.nii.gz")
        write_nifti(labels.with_array((labels.array > 1).astype(np.uint8)),
                    folder / "labelsTr" / f"la_{n:03d}.nii.gz")  # fmt: skip
    write_nifti(_pair(9)[0], folder / "imagesTs" / "la_009_0000.nii.gz")
    meta: dict[str, object] = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "left atrium": 1},
        "numTraining": 2,
        "file_ending": ".nii.gz",
        "name": "Heart",
    }
    if listed:
        meta["dataset"] = {
            f"la_{n:03d}": {
                "images": [f"imagesTr/la_{n:03d}_0000.nii.gz"],
                "label": f"labelsTr/la_{n:03d}.nii.gz",
            }
            for n in (3, 4)
        }
    (folder / "dataset.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("listed", [False, True])
def test_reads_nnunet_documented_layouts(tmp_path: Path, listed: bool) -> None:
    folder = tmp_path / "Dataset002_Heart"
    _nnunet_example(folder, listed=listed)
    dataset = read_nnunet_dataset(folder)
    assert dataset.dataset_id == 2
    assert dataset.channel_names == {"0": "MRI"}
    assert dataset.label_names() == {1: "left atrium"}
    assert [c.case_id for c in dataset.cases] == ["la_003", "la_004"]
    assert dataset.kneescope == {}
    assert dataset.case_info("la_003") == {}
    image, labels = read_nnunet_case(dataset.cases[1])
    assert np.array_equal(image.array, _pair(4)[0].array)
    assert np.array_equal(labels.array, (_pair(4)[1].array > 1).astype(np.uint8))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("file_ending"), "missing the key"),
        (lambda m: m.update(numTraining=3), "numTraining is 3 but 2"),
        (lambda m: m.update(labels={"background": 0, "tumour": [1, 2]}), "is a region"),
        (lambda m: m.update(labels={"background": 0, "a": 2}), "no gaps"),
        (lambda m: m.update(file_ending=".png"), "kneescope reads"),
        (lambda m: m.update(channel_names={"1": "T2"}), "channel_names"),
    ],
)
def test_bad_dataset_json_one_line(tmp_path: Path, change: object, message: str) -> None:
    folder = tmp_path / "Dataset002_Heart"
    _nnunet_example(folder)
    meta = json.loads((folder / "dataset.json").read_text())
    change(meta)  # type: ignore[operator]
    (folder / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=message):
        read_nnunet_dataset(folder)


def test_missing_files_and_channels(tmp_path: Path) -> None:
    folder = tmp_path / "Dataset002_Heart"
    _nnunet_example(folder)
    (folder / "labelsTr" / "la_004.nii.gz").unlink()
    with pytest.raises(InputError, match="have no label map"):
        read_nnunet_dataset(folder)
    with pytest.raises(InputError, match=r"no dataset\.json"):
        read_nnunet_dataset(tmp_path)
    folder = tmp_path / "Dataset003_Two"
    _nnunet_example(folder)
    meta = json.loads((folder / "dataset.json").read_text())
    meta["channel_names"] = {"0": "T1", "1": "T2"}
    (folder / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="missing image"):
        read_nnunet_dataset(folder)
    for n in (3, 4):
        write_nifti(_pair(n)[0], folder / "imagesTr" / f"la_{n:03d}_0001.nii.gz")
    dataset = read_nnunet_dataset(folder)
    with pytest.raises(InputError, match="2 channels"):
        read_nnunet_case(dataset.cases[0])


def _nnunet_json_writer() -> Any:
    """nnU-Net's own dataset.json writer (nnunetv2 from PyPI, a test-time tool)."""
    if importlib.util.find_spec("nnunetv2") is None:
        message = "nnunetv2 is not installed (scripts/test.sh installs it without timm)"
        if os.environ.get("KNEESCOPE_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    module = importlib.import_module("nnunetv2.dataset_conversion.generate_dataset_json")
    return module.generate_dataset_json


def test_reads_dataset_json_written_by_nnunet(tmp_path: Path) -> None:
    generate_dataset_json = _nnunet_json_writer()
    folder = tmp_path / "Dataset002_Heart"
    _nnunet_example(folder)
    (folder / "dataset.json").unlink()
    generate_dataset_json(
        str(folder), {0: "MRI"}, {"background": 0, "left atrium": 1}, 2, ".nii.gz",
        dataset_name="Dataset002_Heart",
    )  # fmt: skip
    dataset = read_nnunet_dataset(folder)
    assert dataset.channel_names == {"0": "MRI"}
    assert dataset.label_names() == {1: "left atrium"}
    assert [c.case_id for c in dataset.cases] == ["la_003", "la_004"]

    generate_dataset_json(
        str(folder), {0: "MRI"}, {"background": 0, "atrium": (1, 2), "wall": 2}, 2, ".nii.gz",
        regions_class_order=(1, 2),
    )  # fmt: skip
    with pytest.raises(InputError, match="is a region"):
        read_nnunet_dataset(folder)
