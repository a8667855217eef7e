"""The ``landmarks`` model-file kind: what a landmark model's file records besides weights.

The generic envelope (network config, weights, data fingerprint, metrics, training record) is
:mod:`kneescope.models.model_file`'s; this is the kind-specific ``spec`` part.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN
from kneescope.transforms.intensity import NormalisationConfig

KIND = "landmarks"
"""Model-file kind of a trained landmark (heat-map) network."""

MAX_LANDMARKS = 256
MAX_INPUT_SIDE = 4096


class LandmarkSpec(BaseModel):
    """A landmark model's kind-specific model-file part.

    Attributes:
        landmarks: landmark names in output-channel order.
        input_size_vox: image size (rows, columns) the network takes.
        spacing_mm: pixel spacing (rows, columns) the network was trained at, mm.
        heatmap_sigma_mm: standard deviation of the training heat-maps, mm (decoding looks
            within three of them around each peak).
        normalisation: per-image intensity normalisation applied before the network.
    """

    model_config = FROZEN

    landmarks: tuple[str, ...] = Field(min_length=1, max_length=MAX_LANDMARKS)
    input_size_vox: tuple[int, int]
    spacing_mm: tuple[float, float]
    heatmap_sigma_mm: float = Field(gt=0.0, le=1000.0)
    normalisation: NormalisationConfig = Field(default_factory=NormalisationConfig)

    @model_validator(mode="after")
    def _check(self) -> LandmarkSpec:
        if not all(0 < n <= MAX_INPUT_SIDE for n in self.input_size_vox):
            raise ValueError(
                f"input_size_vox {self.input_size_vox} must be 1..{MAX_INPUT_SIDE} per axis"
            )
        if not all(math.isfinite(s) and 0 < s <= 100 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm {self.spacing_mm} must be positive mm (at most 100)")
        if len(set(self.landmarks)) != len(self.landmarks):
            raise ValueError(f"landmark names repeat: {self.landmarks}")
        return self
