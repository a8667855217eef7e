"""The 3D MRI KL grade refuses what it cannot grade, with one clear error (issue 16, item 1):
a 2D image, non-finite voxels, a 2D KL model given as the MRI model (and a 3D model given to
the 2D radiograph path), a volume model file without its grid orientation, a missing file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.capabilities.classification.kl import KL_CLASSES, grade_knees, load_kl_model
from kneescope.capabilities.classification.mri_kl import grade_volume, load_mri_kl_model
from kneescope.capabilities.classification.spec import KIND, ClassificationSpec
from kneescope.core import Volume
from kneescope.errors import ConfigError, InputError, ModelError
from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_file import ModelFile, save_model_file


def _model(path: Path, dims: int, spec: dict[str, object]) -> Path:
    network = NetworkConfig(
        name="resnet",
        spatial_dims=dims,  # type: ignore[arg-type]
        out_channels=5,
        features=(4, 8, 8, 8),
        layers=(1, 1, 1, 1),
        norm="instance",
        act="relu",
    )
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in build_network(network).state_dict().items()}
    save_model_file(ModelFile(KIND, network, spec, state), path)
    return path


def _volume_model(tmp_path: Path) -> Path:
    spec = ClassificationSpec(classes=KL_CLASSES, input_size_vox=(32, 32, 32), orientation="RIA")
    return _model(tmp_path / "mri.pt", 3, spec.model_dump(mode="json"))


def _image_model(tmp_path: Path) -> Path:
    spec = ClassificationSpec(classes=KL_CLASSES, input_size_vox=(32, 32))
    return _model(tmp_path / "xray.pt", 2, spec.model_dump(mode="json"))


def test_a_2d_image_or_non_finite_voxels_are_refused(tmp_path: Path) -> None:
    model = load_mri_kl_model(_volume_model(tmp_path))
    flat = Volume(np.ones((32, 32), dtype=np.float32), np.eye(4))
    with pytest.raises(InputError, match="3D image"):
        grade_volume(model, flat, "right")
    array = np.ones((32, 32, 32), dtype=np.float32)
    array[3, 4, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        grade_volume(model, Volume(array, np.eye(4)), "right")


def test_models_of_the_other_dimension_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a 3D volume classifier"):
        load_mri_kl_model(_image_model(tmp_path))
    volume_model = load_kl_model(_volume_model(tmp_path))  # a KL model, but of volumes
    with pytest.raises(ModelError, match="3D volumes"):
        grade_knees(volume_model, np.zeros((1, 700, 700), dtype=np.float32))


def test_a_volume_model_file_without_its_orientation_is_refused(tmp_path: Path) -> None:
    spec = {"classes": list(KL_CLASSES), "input_size_vox": [32, 32, 32]}
    path = _model(tmp_path / "broken.pt", 3, spec)
    with pytest.raises(ModelError, match="orientation"):
        load_mri_kl_model(path)


def test_the_step_refuses_a_missing_model_file(tmp_path: Path) -> None:
    from kneescope.capabilities.classification.mri_klg_step import MriKlGrade

    with pytest.raises((ConfigError, ModelError)):
        MriKlGrade(model=str(tmp_path / "missing.pt"))
