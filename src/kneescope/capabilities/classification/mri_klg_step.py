"""The ``mri_klg`` step: the KL grade of each knee from its whole 3D MRI volume.

Pipeline (knee MRI): ``load_volume -> mri_klg`` (alongside ``segment``/``measure``). It reads
``image`` (the loaded MRI, a :class:`~kneescope.core.Volume`, any orientation); a left knee
(the item's ``side``, else the side the image records) is mirrored onto right-knee anatomy as
the segmentation does. Columns ``mri_kl_label``, ``mri_kl_index`` (the grade 0-4),
``mri_kl_probability`` and ``mri_kl_probability_0`` ... ``mri_kl_probability_4`` (calibrated
by the model's temperature). See :mod:`kneescope.capabilities.classification.mri_kl` for what
the model sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from kneescope.capabilities.classification.model_step import ModelFileStep
from kneescope.capabilities.classification.mri_kl import DEFAULT_MRI_KL_MODEL
from kneescope.capabilities.classification.results import CAPABILITY, result_columns
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import StepContext, StepResult

PREFIX = "mri_kl"


class MriKlGrade(ModelFileStep):
    """KL grade and calibrated probabilities of ``image`` (a whole knee MRI).

    Options:
        model: a 3D MRI KL classification model file, a name in ``WS/models/`` or a shipped
            model's name; default the shipped ``kl-mri-synth``.
    """

    name = "mri_klg"
    version = "1"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = result_columns(("0", "1", "2", "3", "4"), PREFIX)
    reads: ClassVar[tuple[str, ...]] = ("image",)
    default_model = DEFAULT_MRI_KL_MODEL
    model_what = "an MRI KL model file"

    def load_model(self, path: Path) -> Any:
        from kneescope.capabilities.classification.mri_kl import load_mri_kl_model

        return load_mri_kl_model(path)

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.capabilities.classification.kl import KL_CLASSES
        from kneescope.capabilities.classification.mri_kl import grade_volume
        from kneescope.capabilities.classification.predict import ClassPrediction
        from kneescope.capabilities.classification.results import result_values

        side = item.side if item.side in ("right", "left") else None
        with context.phase("infer"):
            graded = grade_volume(self.loaded_model(), context.data["image"], side)
        prediction = ClassPrediction(classes=KL_CLASSES, probabilities=graded.probabilities)
        return StepResult(values=result_values(prediction, 0, PREFIX))
