"""The segmentation part of a model file: labels, grid, preprocessing and inference window.

The generic envelope (kind, network, weights, fingerprint, metrics) is
:mod:`kneescope.models.model_file`; this module is the ``"segmentation"`` kind: its
description (:class:`ModelSpec`), and reading and writing segmentation model files (version 2,
and version-1 files written before the training engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN
from kneescope.models import NetworkConfig
from kneescope.models.model_file import (
    MAX_FEATURES,
    ModelFile,
    load_model_file,
    network_with_weights,
    save_model_file,
    validate_description,
)
from kneescope.transforms.intensity import NormalisationConfig

KIND = "segmentation"
"""The model-file kind of segmentation networks."""

ENVELOPE_FIELDS = frozenset({"network", "data_fingerprint", "training"})
"""ModelSpec fields that the version-2 envelope holds (not its ``spec``)."""

MAX_CLASSES = 255
"""Most output channels: label maps are uint8."""
MAX_WINDOW_SIDE = 1024
"""Longest side of an inference window, voxels."""
MAX_WINDOW_VOXELS = 2**26
"""Most voxels in one inference window (64 Mi, e.g. 400^3): the window's logits, blending
weights and their sums are allocated per window."""


def window_problem(roi_size_vox: tuple[int, ...]) -> str | None:
    """Why an inference window cannot be used (too small, too large), or None when it can."""
    if len(roi_size_vox) != 3 or any(int(n) < 1 for n in roi_size_vox):
        return f"window {tuple(roi_size_vox)} needs three positive sizes"
    if max(roi_size_vox) > MAX_WINDOW_SIDE or math.prod(roi_size_vox) > MAX_WINDOW_VOXELS:
        return (
            f"window {tuple(roi_size_vox)} is larger than kneescope allows (at most "
            f"{MAX_WINDOW_SIDE} voxels a side and {MAX_WINDOW_VOXELS:,} voxels)"
        )
    return None


class ModelSpec(BaseModel):
    """Everything about a trained segmentation network except its weights.

    Attributes:
        network: the registry config the weights belong to.
        mode: ``"2d"`` (slice-wise along axis i) or ``"3d"``.
        labels: output channel value -> structure name (0 is background, not listed).
        label_scheme: name of the label scheme (``"kneescope"``, ``"oai-zib"``).
        spacing_mm: voxel spacing (i, j, k) the network works at, after reorientation.
        orientation: axis code the arrays are reoriented to before the network, e.g. ``"LPS"``.
        normalisation: intensity normalisation.
        roi_size_vox: inference window (i, j, k); 2D models use ``(1, h, w)``.
        flip_axes: reoriented array axes the training augmentation flipped (the only flips
            test-time augmentation may use; 3D models flip left-right, axis i).
        side_canonical: left knees are mirrored along the left-right axis before the network
            and back after, so the network only ever sees right-knee anatomy; segmenting with
            it needs each knee's side.
        data_fingerprint: hash of the training data (file names, sizes, label counts).
        training: free-form record of the training run (config, epochs, validation scores).
    """

    model_config = FROZEN

    network: NetworkConfig
    mode: Literal["2d", "3d"]
    labels: dict[int, str]
    label_scheme: str = "kneescope"
    spacing_mm: tuple[float, float, float]
    orientation: str = "RAS"
    normalisation: NormalisationConfig = Field(default_factory=NormalisationConfig)
    roi_size_vox: tuple[int, int, int]
    flip_axes: tuple[int, ...] = ()
    side_canonical: bool = False
    data_fingerprint: str = ""
    training: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_limits(self) -> ModelSpec:
        """Refuse values that would allocate absurd memory before anything is allocated."""
        net = self.network
        if max(net.features, default=0) > MAX_FEATURES:
            raise ValueError(
                f"network features {net.features} exceed {MAX_FEATURES}; the file is corrupt"
            )
        if net.out_channels > MAX_CLASSES + 1 or net.in_channels > 16:
            raise ValueError(
                f"{net.in_channels} input / {net.out_channels} output channels is more than "
                f"kneescope allows (16 / {MAX_CLASSES + 1})"
            )
        problem = window_problem(self.roi_size_vox)
        if problem:
            raise ValueError(problem)
        if not all(math.isfinite(s) and 0 < s <= 100 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm {self.spacing_mm} must be positive mm (at most 100)")
        return self

    @property
    def num_classes(self) -> int:
        return self.network.out_channels


@dataclass(frozen=True)
class SegmentationModel:
    """A model spec with its weights (``state_dict`` tensors on the CPU)."""

    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]

    def build(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The network with these weights, in eval mode, on ``device``."""
        return network_with_weights(self.spec.network, self.state_dict, device)


def spec_part(spec: ModelSpec) -> dict[str, Any]:
    """The kind-specific part of ``spec`` (what a version-2 file keeps under ``spec``)."""
    return spec.model_dump(mode="json", exclude=set(ENVELOPE_FIELDS))


def save_model(model: SegmentationModel, path: Path, metrics: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically as a version-2 model file."""
    spec = model.spec
    envelope = ModelFile(
        kind=KIND,
        network=spec.network,
        spec=spec_part(spec),
        state_dict=model.state_dict,
        data_fingerprint=spec.data_fingerprint,
        metrics=metrics,
        training=spec.training,
    )
    return save_model_file(envelope, path)


def load_model(path: Path) -> SegmentationModel:
    """Read a segmentation model file (version 2, or version 1) with ``weights_only=True``.

    Raises:
        ModelError: the file is missing, not a kneescope segmentation model, corrupt, from a
            newer format, or describes absurd sizes.
    """
    envelope = load_model_file(path, kind=KIND)
    return from_model_file(path, envelope)


def from_model_file(path: Path, envelope: ModelFile) -> SegmentationModel:
    """The segmentation model of a loaded model file (its ``spec`` validated)."""
    raw = {
        **envelope.spec,
        "network": envelope.network.model_dump(mode="json"),
        "data_fingerprint": envelope.data_fingerprint,
        "training": envelope.training,
    }
    spec = validate_description(ModelSpec, raw, path)
    return SegmentationModel(spec=spec, state_dict=envelope.state_dict)
