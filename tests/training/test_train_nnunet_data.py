"""`kneescope train` on an nnU-Net v2 raw dataset (data_dir = DatasetNNN_Name): cases, sides
and labels (matched by name, whatever values the dataset uses) as the dataset says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.capabilities.segmentation.task import TRAINING
from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.io.nifti import write_nifti
from kneescope.workspace import Workspace

SHAPE = (12, 20, 20)
FOREIGN = {"background": 0, "tibia": 1, "femur": 2, "femoral_cartilage": 3}
"""The dataset's own label values (kneescope's are femur 1, femoral_cartilage 2, tibia 3)."""


def _truth(seed: int) -> np.ndarray:  # type: ignore[type-arg]
    """kneescope label values: a ball 'femur' (1) with a cartilage shell (2), a 'tibia' box (3)."""
    grid = np.indices(SHAPE).astype(np.float32)
    centre = np.array([6.0, 7.0 + seed % 2, 10.0])
    r = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    labels = np.zeros(SHAPE, np.uint8)
    labels[r < 6] = 2
    labels[r < 4] = 1
    labels[2:10, 14:19, 4:16] = 3
    return labels


def _dataset(root: Path, labels: dict[str, int] = FOREIGN) -> Path:
    """An nnU-Net dataset as a user prepares one for nnU-Net: foreign label values, sides in
    sides.csv, written without kneescope's dataset writer."""
    folder = root / "Dataset042_Knees"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    to_foreign = np.array([0, FOREIGN["femur"], FOREIGN["femoral_cartilage"], FOREIGN["tibia"]])
    rng = np.random.default_rng(0)
    for n in range(3):
        truth = _truth(n)
        image = (np.array([0.0, 1.0, 2.5, -1.0])[truth] + rng.normal(0, 0.2, SHAPE)).astype(
            np.float32
        )
        write_nifti(Volume(image, np.eye(4)), folder / "imagesTr" / f"knee{n}_0000.nii.gz")
        write_nifti(
            Volume(to_foreign[truth].astype(np.uint8), np.eye(4)),
            folder / "labelsTr" / f"knee{n}.nii.gz",
        )
    (folder / "sides.csv").write_text("name,side\nknee0,right\nknee1,left\nknee2,right\n")
    meta = {
        "channel_names": {"0": "MRI"},
        "labels": labels,
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


def test_cases_sides_and_labels_by_name(tmp_path: Path) -> None:
    folder = _dataset(tmp_path)
    config = SegmentationTrainConfig(
        data_dir=Path(folder.name),
        spacing_mm=(1.0, 1.0, 1.0),
        orientation="RAS",
        side_canonical=False,
        val_fraction=0.34,
    )
    task = TRAINING.build(config, workspace=Workspace(tmp_path / "ws"), seed=0, base_dir=tmp_path)
    cases = {c.name: c for c in [*task.train_cases, *task.val_cases]}
    assert sorted(cases) == ["knee0", "knee1", "knee2"]
    assert (task.train_size, task.val_size) == (2, 1)
    for name, case in cases.items():
        assert np.array_equal(case.labels, _truth(int(name[-1])))  # kneescope's values
    assert task.config.label_remap == {1: 3, 2: 1, 3: 2}

    from kneescope.capabilities.segmentation.training_data import find_pairs

    sides = {p.name: p.side for p in find_pairs(config, Workspace(tmp_path / "ws"), tmp_path)}
    assert sides == {"knee0": "right", "knee1": "left", "knee2": "right"}


def _config(path: Path, data_dir: str) -> Path:
    """A tiny training file on ``data_dir`` (2 iterations of a 3-level U-Net)."""
    path.write_text(
        f'name = "from-nnunet"\ndata_dir = "{data_dir}"\n'
        'network = { name = "unet", spatial_dims = 3, features = [4, 8, 16], strides = [2, 2],'
        " num_res_units = 0 }\n"
        "patch_size_vox = [8, 16, 16]\n"
        "spacing_mm = [1.0, 1.0, 1.0]\n"
        'orientation = "RAS"\n'
        "augment = false\n"
        "iterations = 2\n"
        "batch_size = 1\n"
        "validate_every = 2\n"
        'precision = "fp32"\n'
        "threads = 1\n"
    )
    return path


def test_unknown_label_names_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _dataset(tmp_path, {"background": 0, "tibia": 1, "femur": 2, "bml": 3})
    config = _config(tmp_path / "train.toml", str(bad))
    assert main(["train", "-c", str(config), "-w", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar's line
    assert err.startswith("error: ")
    assert "label(s) 'bml' are not in the 'kneescope' scheme" in err
    assert "set label_remap" in err


@pytest.mark.slow
def test_kneescope_train_on_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _dataset(tmp_path)
    config = _config(tmp_path / "train.toml", "Dataset042_Knees")
    ws = tmp_path / "ws"
    assert main(["train", "-c", str(config), "-w", str(ws), "--json"]) == 0
    json.loads(capsys.readouterr().out)
    record = torch.load(ws / "models" / "from-nnunet.pt", map_location="cpu", weights_only=False)
    text = json.dumps(record, default=str)
    for case in ("knee0", "knee1", "knee2"):
        assert f'"{case}"' in text


def test_sides_from_kneescopes_own_export(tmp_path: Path) -> None:
    """A dataset kneescope wrote records each case's side in dataset.json: training reads it
    (no sides.csv), and kneescope's label values are used as they are (no remap)."""
    from kneescope.capabilities.segmentation.task import with_dataset_labels
    from kneescope.capabilities.segmentation.training_data import find_pairs
    from kneescope.core.labels import KNEE_LABELS
    from kneescope.io.nnunet_dataset import NnunetCaseData, write_nnunet_dataset

    cases = [
        NnunetCaseData(
            f"S1_V00_{side}",
            Volume(np.zeros(SHAPE, np.int16), np.eye(4)),
            Volume(_truth(n), np.eye(4)),
            {"side": side},
        )
        for n, side in enumerate(("right", "left"))
    ]
    write_nnunet_dataset(tmp_path / "Dataset003_own", cases, labels=KNEE_LABELS.labels)
    config = SegmentationTrainConfig(data_dir=Path("Dataset003_own"))
    pairs = find_pairs(config, Workspace(tmp_path / "ws"), tmp_path)
    assert {p.name: p.side for p in pairs} == {"S1_V00_right": "right", "S1_V00_left": "left"}
    assert with_dataset_labels(config, tmp_path).label_remap is None
