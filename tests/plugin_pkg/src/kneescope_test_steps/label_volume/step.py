"""The ``label_volume`` step: voxels and volume (mm^3) of one label of the item's label map."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, StepContext, StepResult
from kneescope.config import validate_config
from kneescope_test_steps.label_volume.config import LabelVolumeConfig
from kneescope_test_steps.label_volume.results import CAPABILITY, RESULTS


class LabelVolume(BaseStep):
    """Reads ``labels`` (a label-map Volume, e.g. from ``load_labels``); writes two columns.

    Options: those of :class:`LabelVolumeConfig`.
    """

    name = "label_volume"
    version = "1"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = RESULTS
    reads: ClassVar[tuple[str, ...]] = ("labels",)

    def __init__(self, **options: Any) -> None:
        self.config = validate_config(LabelVolumeConfig, options, "label_volume options")

    def run(self, item: Item, context: StepContext) -> StepResult:
        labels = context.data["labels"]
        with context.phase("measure"):
            voxels = int(np.count_nonzero(labels.array == self.config.label))
            voxel_mm3 = float(abs(np.linalg.det(labels.affine_ras[:3, :3])))
        return StepResult(values={"label_voxels": voxels, "label_volume_mm3": voxels * voxel_mm3})
