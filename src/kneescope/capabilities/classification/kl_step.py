"""The ``kl_grade`` step: the KL grade of each knee item from its standard knee ROI.

Pipeline (knee radiographs): ``load_volume -> locate_knee -> kl_grade [-> xray_jsw]``. It reads
``knee_roi`` (a ``(700, 700)`` float32 ROI at 0.2 mm, right frame, or ``None`` when the knee
cannot be graded: the locate step's ``xray_reason`` column then says why) and
``other_knee_roi`` (the same film's other knee, for a paired model; ``None``: none). Columns
``kl_label``, ``kl_index`` (the grade 0-4), ``kl_probability`` and ``kl_probability_0`` ...
``kl_probability_4`` (calibrated); all empty for a knee that cannot be graded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from kneescope.capabilities.classification.kl import DEFAULT_KL_MODEL
from kneescope.capabilities.classification.model_step import ModelFileStep
from kneescope.capabilities.classification.results import CAPABILITY, result_columns
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import StepContext, StepResult

PREFIX = "kl"
ROI_SPACING_MM = 0.2
"""Pixel spacing of the standard knee ROI the locate step writes."""


class KlGrade(ModelFileStep):
    """KL grade and calibrated probabilities of ``knee_roi``.

    Options:
        model: a KL classification model file, a name in ``WS/models/`` or a shipped model's
            name; default the shipped ``kl-xray-real``.
    """

    name = "kl_grade"
    version = "1"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = result_columns(("0", "1", "2", "3", "4"), PREFIX)
    reads: ClassVar[tuple[str, ...]] = ("knee_roi", "other_knee_roi")
    default_model = DEFAULT_KL_MODEL
    model_what = "a KL model file"

    def load_model(self, path: Path) -> Any:
        from kneescope.capabilities.classification.kl import load_kl_model

        return load_kl_model(path)

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.capabilities.classification.kl import KL_CLASSES, grade_knees
        from kneescope.capabilities.classification.predict import ClassPrediction
        from kneescope.capabilities.classification.results import result_values

        roi = context.data.get("knee_roi")
        if roi is None:
            return StepResult()
        other = context.data.get("other_knee_roi")
        with context.phase("infer"):
            graded = grade_knees(
                self.loaded_model(),
                roi[None],
                None if other is None else other[None],
                roi_spacing_mm=ROI_SPACING_MM,
            )
        prediction = ClassPrediction(classes=KL_CLASSES, probabilities=graded.probabilities)
        return StepResult(values=result_values(prediction, 0, PREFIX))
