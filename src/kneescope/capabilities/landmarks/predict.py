"""Locate landmarks with a ``landmarks`` model file: positions in mm per image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from kneescope.capabilities.landmarks.heatmaps import decode_heatmaps, sigma_vox
from kneescope.capabilities.landmarks.spec import KIND, LandmarkSpec
from kneescope.errors import InputError, ModelError
from kneescope.models import divisor
from kneescope.models.model_file import ModelFile, load_model_file, validate_description
from kneescope.transforms.image_batch import normalise_images

CHUNK = 32
"""Images per forward pass."""


@dataclass(frozen=True)
class LandmarkModel:
    """A loaded landmark model: its spec and its network (eval mode, on ``device``)."""

    spec: LandmarkSpec
    network: torch.nn.Module
    model_file: ModelFile
    device: torch.device


@dataclass(frozen=True)
class LandmarkPrediction:
    """Landmark positions of ``N`` images.

    Attributes:
        landmarks: landmark names, in the order of ``positions_mm``' second axis.
        positions_mm: ``(N, landmarks, 2)`` float64 (row, column) positions in mm from the
            centre of pixel (0, 0).
        spacing_mm: the pixel spacing (rows, columns) the positions were computed with.
    """

    landmarks: tuple[str, ...]
    positions_mm: npt.NDArray[np.float64]
    spacing_mm: tuple[float, float]


def _spec(model: ModelFile, path: Path) -> LandmarkSpec:
    raw = {k: v for k, v in model.spec.items() if k != "training"}
    spec = validate_description(
        LandmarkSpec, raw, path, what="landmark", default_where="spec", hint="; retrain the model"
    )
    net = model.network
    fits = all(n % m == 0 for n, m in zip(spec.input_size_vox, divisor(net), strict=False))
    if net.out_channels != len(spec.landmarks) or net.spatial_dims != 2 or not fits:
        raise ModelError(
            f"{path}: the network ({net.spatial_dims}D, {net.out_channels} outputs) does not fit "
            f"the {len(spec.landmarks)} landmarks and input {spec.input_size_vox}; the file is "
            "corrupt: retrain the model"
        )
    return spec


def load_landmark_model(path: Path, *, device: torch.device | str = "cpu") -> LandmarkModel:
    """Load a ``landmarks`` model file.

    Raises:
        ModelError: missing, corrupt, of another kind, or inconsistent.
    """
    model = load_model_file(path, kind=KIND)
    spec = _spec(model, path)
    dev = torch.device(device)
    return LandmarkModel(spec=spec, network=model.build(dev), model_file=model, device=dev)


def predict_landmarks(
    model: LandmarkModel | Path,
    images: npt.NDArray[Any],
    *,
    spacing_mm: tuple[float, float] | None = None,
) -> LandmarkPrediction:
    """Landmark positions in ``images``.

    Args:
        model: a loaded landmark model or the path of a ``landmarks`` model file.
        images: ``(N, rows, columns)`` or one ``(rows, columns)`` image at the model's input
            size and pixel spacing, any real dtype.
        spacing_mm: the images' pixel spacing (rows, columns), checked against the model's;
            ``None``: assumed to be the model's.

    Raises:
        InputError: images of the wrong size or spacing, or with non-finite values.
        ModelError: the model file cannot be used.
    """
    located = model if isinstance(model, LandmarkModel) else load_landmark_model(model)
    spec = located.spec
    if spacing_mm is not None and not all(
        math.isclose(a, b, rel_tol=1e-4) for a, b in zip(spacing_mm, spec.spacing_mm, strict=True)
    ):
        raise InputError(
            f"images have pixel spacing {tuple(spacing_mm)} mm, the model works at "
            f"{spec.spacing_mm} mm; resample the images to the model's spacing"
        )
    batch = torch.from_numpy(normalise_images(images, spec.input_size_vox, spec.normalisation))
    sigma = sigma_vox(spec.heatmap_sigma_mm, spec.spacing_mm)
    found = []
    with torch.no_grad():
        for start in range(0, batch.shape[0], CHUNK):
            logits = located.network(batch[start : start + CHUNK].to(located.device))
            found.append(decode_heatmaps(logits, sigma).cpu())
    positions_vox = torch.cat(found).double().numpy()
    return LandmarkPrediction(
        landmarks=spec.landmarks,
        positions_mm=positions_vox * np.asarray(spec.spacing_mm, dtype=np.float64),
        spacing_mm=spec.spacing_mm,
    )
