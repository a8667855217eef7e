"""Intensity normalisation shared by training and inference.

Statistics come from the whole volume (a strided subsample, for speed); the normalisation is
then applied window by window, so inference never needs a float copy of a raw volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, Field

from kneescope.config import FROZEN


class NormalisationConfig(BaseModel):
    """How intensities are normalised before a network sees them.

    Attributes:
        kind: ``"zscore"`` (clip to percentiles, subtract mean, divide by std) or
            ``"minmax"`` (clip to percentiles, map to [0, 1]).
        clip_percentiles: lower and upper percentile for clipping.
    """

    model_config = FROZEN

    kind: Literal["zscore", "minmax"] = "zscore"
    clip_percentiles: tuple[float, float] = Field(default=(0.5, 99.5))


@dataclass(frozen=True)
class IntensityStats:
    """Per-volume values that define the normalisation (all in input intensity units)."""

    low: float
    high: float
    centre: float
    scale: float

    def apply_numpy(self, array: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        out = np.clip(np.asarray(array, dtype=np.float32), self.low, self.high)
        out -= np.float32(self.centre)
        out /= np.float32(self.scale)
        return out

    def apply_torch(self, array: npt.NDArray[Any]) -> torch.Tensor:
        """Normalise one window (any shape) into a float32 tensor."""
        t = torch.from_numpy(np.ascontiguousarray(array)).to(torch.float32)
        return t.clamp_(self.low, self.high).sub_(self.centre).div_(self.scale)


def intensity_stats(
    array: npt.NDArray[Any], config: NormalisationConfig, *, max_samples: int = 500_000
) -> IntensityStats:
    """Compute the normalisation of one volume from a strided subsample of its voxels."""
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // max_samples)
    sample = flat[::step].astype(np.float32)
    low, high = np.percentile(sample, config.clip_percentiles)
    clipped = np.clip(sample, low, high)
    if config.kind == "zscore":
        centre = float(clipped.mean())
        scale = float(clipped.std())
    else:
        centre = float(low)
        scale = float(high - low)
    return IntensityStats(low=float(low), high=float(high), centre=centre, scale=max(scale, 1e-6))
