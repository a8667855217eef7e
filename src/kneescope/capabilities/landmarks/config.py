"""The landmark task's configuration (what is specific to locating points on 2D images).

The engine's keys (iterations, batch size, learning rate, precision, ...) live in
:class:`kneescope.training.engine_config.EngineConfig`; this config holds the landmarks, the
image grid and spacing, the heat-map width, the normalisation and the network.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN
from kneescope.models import NetworkConfig, divisor
from kneescope.transforms.intensity import NormalisationConfig


def default_landmark_network(n_landmarks: int, in_channels: int = 1) -> NetworkConfig:
    """A small 2D MONAI UNet (16, 32, 64 channels, two down-samplings), one output per landmark.

    Input sizes must be multiples of 4.
    """
    return NetworkConfig(
        name="unet",
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=n_landmarks,
        features=(16, 32, 64),
        strides=(2, 2),
        num_res_units=1,
        norm="instance",
        act="prelu",
    )


class SyntheticLandmarkSource(BaseModel):
    """Train on generated images (:mod:`kneescope.capabilities.landmarks.synthetic`).

    Attributes:
        source: ``"synthetic"``.
        train: number of training images.
        validation: number of validation images (generated with another seed).
        landmarks: which features to draw (``blob``, ``ring``, ``corner``).
        spacing_mm: pixel spacing (rows, columns) of the generated images, mm.
        noise: standard deviation of the image noise (features have a contrast of about 1).
    """

    model_config = FROZEN

    source: Literal["synthetic"] = "synthetic"
    train: int = Field(200, ge=1, le=100_000)
    validation: int = Field(50, ge=1, le=100_000)
    landmarks: tuple[str, ...] = ("blob", "ring", "corner")
    spacing_mm: tuple[float, float] = (0.8, 0.6)
    noise: float = Field(0.15, ge=0.0)


class LandmarkConfig(BaseModel):
    """What the landmark task needs besides the engine settings.

    In a training file (``task = "landmarks"``) these are the keys that are not engine keys,
    with the data under ``[data]``.

    Attributes:
        landmarks: landmark names, in output-channel order (unique); empty: the data's.
        input_size_vox: image size (rows, columns) the network takes; every image must have
            it, and it must be a multiple of the network's down-sampling.
        spacing_mm: pixel spacing (rows, columns) of the images, mm; positions are in mm from
            the centre of the first pixel. ``None``: the data's.
        heatmap_sigma_mm: standard deviation of the Gaussian target around each landmark, mm.
        success_radius_mm: a prediction within this distance of the truth counts as a hit
            (the ``success_rate`` metric).
        network: a 2D segmentation-style network with one output channel per landmark;
            ``None``: :func:`default_landmark_network`.
        normalisation: per-image intensity normalisation.
        data: where ``kneescope train`` takes the images from; ``None`` when the task is
            built from arrays in Python.
    """

    model_config = FROZEN

    landmarks: tuple[str, ...] = ()
    input_size_vox: tuple[int, int] = (48, 48)
    spacing_mm: tuple[float, float] | None = None
    heatmap_sigma_mm: float = Field(2.0, gt=0.0)
    success_radius_mm: float = Field(2.0, gt=0.0)
    network: NetworkConfig | None = None
    normalisation: NormalisationConfig = Field(default_factory=NormalisationConfig)
    data: SyntheticLandmarkSource | None = None

    @model_validator(mode="after")
    def _check(self) -> LandmarkConfig:
        if len(set(self.landmarks)) != len(self.landmarks) or not all(self.landmarks):
            raise ValueError(f"landmarks must be unique non-empty names, found {self.landmarks}")
        spacing = self.spacing_mm or (1.0, 1.0)
        if not all(math.isfinite(s) and 0 < s <= 100 for s in spacing):
            raise ValueError(f"spacing_mm {self.spacing_mm} must be positive mm (at most 100)")
        net = self.network or default_landmark_network(max(1, len(self.landmarks)))
        if net.name == "vgg_classifier" or net.spatial_dims != 2:
            raise ValueError("landmarks need a 2D unet, basic_unet or dynunet network")
        if self.landmarks:
            self.network_config(len(self.landmarks))  # out_channels must match
        multiple = divisor(net)
        if any(
            n < 1 or n > 4096 or n % m for n, m in zip(self.input_size_vox, multiple, strict=True)
        ):
            raise ValueError(
                f"input_size_vox {self.input_size_vox} must be multiples of {multiple} (the "
                "network's down-sampling), at most 4096"
            )
        return self

    def network_config(self, n_landmarks: int) -> NetworkConfig:
        """The network to train for ``n_landmarks`` (the given one or the default UNet)."""
        if self.network is None:
            return default_landmark_network(n_landmarks)
        if self.network.out_channels != n_landmarks:
            raise ValueError(
                f"network out_channels {self.network.out_channels} must equal the number of "
                f"landmarks ({n_landmarks})"
            )
        return self.network
