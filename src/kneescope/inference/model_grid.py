"""The way from an input image's grid to a model's working grid and back.

Reorientation to the model's axis code (permutation and flips only), mirroring of a left knee
for side-canonical models, and resampling to the model's spacing (2D models keep the input's
spacing along the slice axis i). The segmenter and the MONAI baseline of the benchmarks both
use it, so they see the same working grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from kneescope.core import Volume
from kneescope.inference.segmentation_model import ModelSpec
from kneescope.transforms.orientation import Reorientation, mirror_to_right, plan_reorientation
from kneescope.transforms.resample import GridChange, plan_resampling


@dataclass(frozen=True)
class ModelGrid:
    """How one image maps onto a model's working grid.

    Attributes:
        reorientation: input grid -> model axis code.
        orientation: the model's axis code.
        mirror: ``"left"`` when a left knee is mirrored onto right-knee anatomy, else ``None``.
        grid: reoriented input grid -> working grid (spacing in mm).
        spacing_mm: working spacing (i, j, k).
    """

    reorientation: Reorientation
    orientation: str
    mirror: str | None
    grid: GridChange
    spacing_mm: tuple[float, float, float]

    def to_model_axes(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """An input-grid array reoriented (and mirrored) to the model's axes; a view."""
        return mirror_to_right(self.reorientation.apply(array), self.orientation, self.mirror)

    def labels_to_source(self, labels: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A working-grid label map (nearest neighbour) back on the input grid; may be a view."""
        on_grid = mirror_to_right(self.grid.labels_to_source(labels), self.orientation, self.mirror)
        return self.reorientation.undo(on_grid)


def plan_model_grid(image: Volume, spec: ModelSpec, side: str | None) -> ModelGrid:
    """The :class:`ModelGrid` of ``image`` (3D) for a model; ``side`` is the knee's side."""
    reo = plan_reorientation(image.affine_ras, image.shape, spec.orientation)
    spacing = [image.spacing_mm[q] for q in reo.permutation]
    target = list(spec.spacing_mm)
    if spec.mode == "2d":
        target[0] = spacing[0]
    shape = tuple(image.shape[q] for q in reo.permutation)
    return ModelGrid(
        reorientation=reo,
        orientation=spec.orientation,
        mirror=side if spec.side_canonical else None,
        grid=plan_resampling(shape, spacing, target),
        spacing_mm=(target[0], target[1], target[2]),
    )
