"""Classification capability: train a 2D image classifier and predict class probabilities.

Public API: :class:`ClassificationConfig`, :class:`ClassificationTask` (a training task for
:func:`kneescope.training.engine.fit`), :data:`KIND` and :class:`ClassificationSpec` (the
model-file kind), :func:`load_classifier` and :func:`predict_classes`, :func:`result_columns`,
:func:`synthetic_classification` (seeded test data with exact truth).
"""

from kneescope.capabilities.classification.config import ClassificationConfig
from kneescope.capabilities.classification.predict import (
    ClassPrediction,
    load_classifier,
    predict_classes,
)
from kneescope.capabilities.classification.results import result_columns
from kneescope.capabilities.classification.spec import KIND, ClassificationSpec
from kneescope.capabilities.classification.synthetic import (
    ClassificationData,
    synthetic_classification,
)
from kneescope.capabilities.classification.task import ClassificationTask

__all__ = [
    "KIND",
    "ClassPrediction",
    "ClassificationConfig",
    "ClassificationData",
    "ClassificationSpec",
    "ClassificationTask",
    "load_classifier",
    "predict_classes",
    "result_columns",
    "synthetic_classification",
]
