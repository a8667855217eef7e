"""Domain randomisation fed bad tissue maps or settings: one error line, exit 2, no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.cli.app import main
from kneescope.core import Volume, affine_from_axes
from kneescope.io import write_nifti

TRAIN = (
    'name = "dr"\nmode = "2d"\ndata_dir = "data"\niterations = 1\n'
    'patch_size_vox = [1, 16, 16]\nnetwork = "unet2d-small"\nval_fraction = 0.0\n'
)


def _data(tmp_path: Path, tissues: np.ndarray | None) -> Path:
    data = tmp_path / "data"
    for sub in ("images", "labels", "tissues"):
        (data / sub).mkdir(parents=True)
    affine = affine_from_axes([0.0, 0.0, 0.0], np.eye(3), (1.0, 1.0, 1.0))
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[:, 5:15, 5:15] = 1
    write_nifti(Volume(labels * 100, affine), data / "images" / "k.nii.gz")
    write_nifti(Volume(labels, affine), data / "labels" / "k.nii.gz")
    if tissues is not None:
        write_nifti(Volume(tissues, affine), data / "tissues" / "k.nii.gz")
    return data


def _train(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "train.toml"
    config.write_text(text)
    ws = tmp_path / "ws"
    code = main(["train", "-w", str(ws), "-c", str(config)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert not (ws / "models" / "dr.pt").exists()
    return code, errors[0]


@pytest.mark.parametrize(
    ("tissues", "message"),
    [
        (np.ones((6, 20, 19), dtype=np.uint8), "tissue map shape (6, 20, 19) and image shape"),
        (np.full((6, 20, 20), 26, dtype=np.uint8), "tissue map values must be integers 0..25"),
        (np.full((6, 20, 20), 1.5, dtype=np.float32), "tissue map values must be integers"),
        (np.full((6, 20, 20), np.nan, dtype=np.float32), "NaN or infinity"),  # io refuses it
    ],
    ids=["other-grid", "unknown-tissue", "fractional", "nan"],
)
def test_a_bad_tissue_map_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tissues: np.ndarray, message: str
) -> None:
    _data(tmp_path, tissues)
    code, line = _train(tmp_path, TRAIN + "[domain_randomisation]\n", capsys)
    assert code == 2 and message in line and ("k:" in line or "k.nii.gz" in line)


def test_domain_randomisation_needs_a_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = TRAIN.replace('data_dir = "data"\n', "") + "[domain_randomisation]\n"
    code, line = _train(tmp_path, text, capsys)
    assert code == 2 and "domain_randomisation needs data_dir" in line


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("p_noise = 2.0", "p_noise"),
        ("slab_slices = 6", "slab_slices must be odd"),
        ("contrast = 'iw-tse-fs'", "contrast: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, message: str
) -> None:
    _data(tmp_path, np.zeros((6, 20, 20), dtype=np.uint8))
    code, line = _train(tmp_path, TRAIN + f"[domain_randomisation]\n{setting}\n", capsys)
    assert code == 2 and message in line


def test_a_whole_number_float_tissue_map_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
    from kneescope.capabilities.segmentation.training_data import find_pairs, load_cases
    from kneescope.transforms.domain_randomisation import DomainRandomisationConfig
    from kneescope.workspace import Workspace

    tissues = np.zeros((6, 20, 20), dtype=np.float32)
    tissues[:, 5:15, 5:15] = 1.0  # femur marrow, as a float NIfTI from another tool
    data = _data(tmp_path, tissues)
    config = SegmentationTrainConfig(
        mode="2d", data_dir=data, domain_randomisation=DomainRandomisationConfig()
    )
    cases, _, _ = load_cases(find_pairs(config, Workspace(tmp_path / "ws"), tmp_path), config)
    assert cases[0].tissues is not None and cases[0].tissues.dtype == np.uint8
    assert int(cases[0].tissues.sum()) == 6 * 10 * 10
