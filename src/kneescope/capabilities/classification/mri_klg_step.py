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

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.capabilities.classification.results import CAPABILITY, result_columns
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, StepContext, StepResult
from kneescope.errors import ConfigError
from kneescope.io.digest import file_sha256

PREFIX = "mri_kl"


def _model_path(model: object) -> Path:
    """The model file the ``model`` option names (default: the shipped MRI KL model)."""
    from kneescope.capabilities.classification.mri_kl import DEFAULT_MRI_KL_MODEL
    from kneescope.models.pretrained import step_model_path

    return step_model_path(model, DEFAULT_MRI_KL_MODEL)


def _hash(path: Path) -> str:
    try:
        return file_sha256(path)[:16]
    except OSError as exc:
        raise ConfigError(
            f"mri_klg: cannot read model {path} ({exc.strerror}); give an MRI KL model file or "
            "a shipped model's name (kneescope models list)"
        ) from None


class MriKlGrade(BaseStep):
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
    model_options: ClassVar[tuple[str, ...]] = ("model",)

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """sha256 (16 hex) of the model file ``options["model"]`` names."""
        return _hash(_model_path(options.get("model")))

    def __init__(self, model: str | None = None) -> None:
        self.model_path = _model_path(model)
        self._model_hash = _hash(self.model_path)
        self._model: Any = None

    @property
    def model_hash(self) -> str:
        return self._model_hash

    def setup(self) -> None:
        from kneescope.capabilities.classification.mri_kl import load_mri_kl_model

        self._model = load_mri_kl_model(self.model_path)

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.capabilities.classification.kl import KL_CLASSES
        from kneescope.capabilities.classification.mri_kl import grade_volume
        from kneescope.capabilities.classification.predict import ClassPrediction
        from kneescope.capabilities.classification.results import result_values

        if self._model is None:
            self.setup()
        side = item.side if item.side in ("right", "left") else None
        with context.phase("infer"):
            graded = grade_volume(self._model, context.data["image"], side)
        prediction = ClassPrediction(classes=KL_CLASSES, probabilities=graded.probabilities)
        return StepResult(values=result_values(prediction, 0, PREFIX))
