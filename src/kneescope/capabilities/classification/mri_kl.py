"""KL grade of a knee from its whole 3D MRI volume (no cropping to a patch).

What the model sees: the loaded MRI (any orientation) reoriented to the model's axis code
(:data:`MRI_ORIENTATION`, permutation and flips only), a left knee mirrored onto right-knee
anatomy (as the segmentation does), the WHOLE field of view resampled to the model's working
grid (``spec.input_size_vox``; the shipped ``kl-mri-synth``: 48x128x128, i.e. the OAI DESS
160x384x384 field of view at 2.33 x 1.09 x 1.09 mm; area averaging when shrinking, trilinear
when enlarging), normalised by its own intensity statistics (z-score after clipping to the
0.5/99.5 percentiles). The network (:func:`mri_kl_network`) is MONAI's 3D ResNet with global
average pooling and one linear layer (no large fully connected layers), so its training step
on the whole 160x384x384 volume fits an 11 GB device (benchmarks/mri_kl_memory.py).

Public API: :func:`mri_kl_network`, :func:`load_mri_kl_model`, :func:`grade_volume`,
:func:`grade_volumes`, :data:`DEFAULT_MRI_KL_MODEL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from kneescope.capabilities.classification.kl import KL_CLASSES, KlPrediction
from kneescope.capabilities.classification.predict import Classifier, load_classifier
from kneescope.capabilities.classification.volume_data import prepare_volume
from kneescope.core import Volume
from kneescope.errors import InputError, ModelError
from kneescope.models import NetworkConfig
from kneescope.models.pretrained import resolve_model
from kneescope.workspace import Workspace

DEFAULT_MRI_KL_MODEL = "kl-mri-synth"
"""The shipped 3D MRI KL model (trained on synthetic knees)."""

MRI_ORIENTATION = "RIA"
"""Axis code of the model grid (the synthetic and OAI sagittal DESS stack: right-left slices,
inferior, anterior)."""

WORKING_GRID_VOX = (48, 128, 128)
"""The shipped model's input: the 160x384x384 field of view at about a third of the voxels."""


def mri_kl_network(n_classes: int = 5) -> NetworkConfig:
    """The 3D KL classifier: MONAI ResNet, basic blocks, 16/32/64/128 channels, one block per
    stage, instance norm, ReLU, global average pooling, one linear layer (0.9 M parameters,
    any input of 32+ voxels per axis)."""
    return NetworkConfig(
        name="resnet",
        spatial_dims=3,
        in_channels=1,
        out_channels=n_classes,
        features=(16, 32, 64, 128),
        layers=(1, 1, 1, 1),
        norm="instance",
        act="relu",
    )


def load_mri_kl_model(
    model: str | Path | None = None,
    *,
    workspace: Workspace | None = None,
    device: str = "cpu",
) -> Classifier:
    """A 3D MRI KL classifier: a path, a workspace model name or a shipped model's name
    (``None``: :data:`DEFAULT_MRI_KL_MODEL`).

    Raises:
        ModelError: not found, not a classification model, not 5 KL grades, or not 3D.
    """
    path = resolve_model(DEFAULT_MRI_KL_MODEL if model is None else model, workspace)
    classifier = load_classifier(path, device=device)
    if classifier.spec.classes != KL_CLASSES:
        raise ModelError(
            f"{path}: its classes {list(classifier.spec.classes)} are not the KL grades 0-4; "
            "give a KL grading model"
        )
    if len(classifier.spec.input_size_vox) != 3 or classifier.model_file.network.spatial_dims != 3:
        raise ModelError(
            f"{path}: not a 3D volume classifier (input {classifier.spec.input_size_vox}); "
            "give an MRI KL model such as kl-mri-synth"
        )
    return classifier


def model_input(
    classifier: Classifier, volume: Volume, side: str | None
) -> npt.NDArray[np.float32]:
    """``(D, H, W)`` float32: ``volume`` as the model sees it (see the module docstring)."""
    spec = classifier.spec
    return prepare_volume(
        volume.array,
        volume.affine_ras,
        side,
        tuple(spec.input_size_vox),
        orientation=spec.orientation or MRI_ORIENTATION,
        normalisation=spec.normalisation,
    )


def volume_logits(
    classifier: Classifier, inputs: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """``(N, classes)`` raw outputs of prepared inputs ``(N, D, H, W)`` (one at a time)."""
    out = []
    with torch.no_grad():
        for item in inputs:
            x = torch.from_numpy(np.ascontiguousarray(item))[None, None].to(classifier.device)
            out.append(classifier.network(x).double().cpu())
    return np.asarray(torch.cat(out).numpy(), dtype=np.float64)


def grade_volumes(
    classifier: Classifier, volumes: Sequence[Volume], sides: Sequence[str | None]
) -> KlPrediction:
    """KL grades and calibrated probabilities (the model's temperature) of knee MRIs.

    Args:
        classifier: from :func:`load_mri_kl_model`.
        volumes: whole knee MRI volumes (3D, any orientation).
        sides: each knee's side (``"right"``/``"left"``; ``None``: the volume's recorded side,
            else taken as a right knee).

    Raises:
        InputError: a volume that is not 3D or holds non-finite values.
    """
    if len(volumes) != len(sides):
        raise InputError(f"{len(volumes)} volumes but {len(sides)} sides; give one side each")
    if not volumes:
        raise InputError("no volumes to grade; give at least one knee MRI")
    inputs = np.stack(
        [
            model_input(classifier, v, s if s is not None else v.side)
            for v, s in zip(volumes, sides, strict=True)
        ]
    )
    logits = volume_logits(classifier, inputs)
    scaled = torch.from_numpy(logits / classifier.spec.temperature)
    probabilities = np.asarray(torch.softmax(scaled, dim=1).numpy(), dtype=np.float64)
    return KlPrediction(
        grades=np.asarray(probabilities.argmax(axis=1), dtype=np.int64),
        probabilities=probabilities,
    )


def grade_volume(classifier: Classifier, volume: Volume, side: str | None = None) -> KlPrediction:
    """:func:`grade_volumes` of one knee MRI."""
    return grade_volumes(classifier, [volume], [side])
