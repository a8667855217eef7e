"""Segmentation training with domain randomisation: tissue maps read from data_dir/tissues/,
prepared exactly like the labels, and a tiny `kneescope train -c` run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.capabilities.segmentation.training_data import find_pairs, load_cases
from kneescope.cli.app import main
from kneescope.core import Volume, affine_from_axes
from kneescope.core import tissues as tt
from kneescope.io import write_nifti
from kneescope.transforms.domain_randomisation import DomainRandomisationConfig
from kneescope.workspace import Workspace


def _knee(folder: Path, name: str, seed: int, side: str, tissues: bool = True) -> None:
    """A tiny knee-like phantom: tissue map, label map = tissue_label_lut()[tissues] and a
    DESS image, written as data_dir/{images,labels,tissues}/name.nii.gz."""
    rng = np.random.default_rng(seed)
    shape = (10, 28, 24)
    idx = np.indices(shape).astype(np.float32)
    c = np.array([5.0, 12.0, 11.0]) + rng.uniform(-1, 1, 3)
    r = np.sqrt(((idx - c[:, None, None, None]) ** 2 * [[[[0.2]]], [[[1]]], [[[1]]]]).sum(0))
    t = np.full(shape, tt.FAT, dtype=np.uint8)
    t[r < 10] = tt.MUSCLE
    t[r < 8] = tt.FLUID
    t[r < 7] = tt.FEMORAL_CARTILAGE
    t[r < 5.5] = tt.FEMUR_CORTEX
    t[r < 4.5] = tt.FEMUR_MARROW
    t[:, 22:, :] = np.where(t[:, 22:, :] == tt.MUSCLE, tt.TIBIA_MARROW, t[:, 22:, :])
    t[:, :, :3] = tt.MEDIAL_MENISCUS
    t[:, :3, :] = tt.BACKGROUND
    labels = tt.tissue_label_lut()[t]
    image = tt.CONTRASTS["dess"][t] * 1000 + rng.normal(0, 20, shape)
    direction = np.eye(3) if side == "right" else np.diag([-1.0, 1.0, 1.0])
    affine = affine_from_axes([0.0, 0.0, 0.0], direction, (2.0, 0.5, 0.5))
    write_nifti(
        Volume(image.clip(0).astype(np.uint16), affine), folder / "images" / f"{name}.nii.gz"
    )
    write_nifti(Volume(labels, affine), folder / "labels" / f"{name}.nii.gz")
    if tissues:
        write_nifti(Volume(t, affine), folder / "tissues" / f"{name}.nii.gz")


def _data(tmp_path: Path, n: int = 3) -> Path:
    data = tmp_path / "data"
    for sub in ("images", "labels", "tissues"):
        (data / sub).mkdir(parents=True)
    for k in range(n):
        _knee(data, f"k{k}", k, "left" if k % 2 else "right")
    sides = "".join(f"k{k},{'left' if k % 2 else 'right'}\n" for k in range(n))
    (data / "sides.csv").write_text("name,side\n" + sides)
    return data


def test_tissue_maps_are_prepared_exactly_like_the_labels(tmp_path: Path) -> None:
    data = _data(tmp_path)
    config = SegmentationTrainConfig(
        mode="2d",
        data_dir=data,
        spacing_mm=(1.0, 0.7, 0.7),  # resampled, and the left knee mirrored
        side_canonical=True,
        domain_randomisation=DomainRandomisationConfig(),
    )
    pairs = find_pairs(config, Workspace(tmp_path / "ws"), tmp_path)
    assert [p.tissues for p in pairs] == [data / "tissues" / f"k{k}.nii.gz" for k in range(3)]
    cases, _, _ = load_cases(pairs, config, side_canonical=True)
    assert [c.mirrored for c in cases] == [False, True, False]
    lut = tt.tissue_label_lut()
    for case in cases:
        assert case.tissues is not None and case.tissues.dtype == np.uint8
        assert case.tissues.shape == case.labels.shape
        np.testing.assert_array_equal(lut[case.tissues], case.labels)
    # without domain randomisation no tissue map is read
    plain = find_pairs(config.model_copy(update={"domain_randomisation": None}), None, tmp_path)  # type: ignore[arg-type]
    assert all(p.tissues is None for p in plain)


def test_train_with_domain_randomisation_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _data(tmp_path)
    config = tmp_path / "train.toml"
    config.write_text(
        'name = "tiny-dr"\nmode = "2d"\ndata_dir = "data"\niterations = 3\n'
        "patch_size_vox = [1, 16, 16]\nbatch_size = 2\nval_fraction = 0.34\n"
        'precision = "fp32"\nvalidate_every = 3\nthreads = 1\n'
        '[network]\nname = "unet"\nspatial_dims = 2\nfeatures = [4, 8]\nstrides = [2]\n'
        "[domain_randomisation]\np_reference = 0.5\np_ghosting = 0.5\nslab_slices = 5\n"
    )
    ws = tmp_path / "ws"
    assert main(["train", "-w", str(ws), "-c", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["iterations_run"] == 3
    from kneescope.inference.segmentation_model import load_model

    model = load_model(Path(report["model"]))
    assert model.spec.training is not None
    recorded = model.spec.training["config"]["domain_randomisation"]
    assert recorded["p_ghosting"] == 0.5 and recorded["slab_slices"] == 5


def test_domain_randomisation_without_tissue_map_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path, 2)
    (data / "tissues" / "k1.nii.gz").unlink()
    config = tmp_path / "train.toml"
    config.write_text(
        'mode = "2d"\ndata_dir = "data"\niterations = 1\npatch_size_vox = [1, 16, 16]\n'
        'network = "unet2d-small"\n[domain_randomisation]\n'
    )
    assert main(["train", "-w", str(tmp_path / "ws"), "-c", str(config)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "k1.nii.gz has no tissue map" in errors[0] and "tissues" in errors[0]
