"""Landmark capability: train a heat-map network for named points on 2D images, predict in mm.

Public API: :class:`LandmarkConfig`, :class:`LandmarkTask` (a training task for
:func:`kneescope.training.engine.fit`), :data:`KIND` and :class:`LandmarkSpec` (the model-file
kind), :func:`load_landmark_model` and :func:`predict_landmarks`, :func:`result_columns`,
:func:`synthetic_landmarks` (seeded test data with exact truth).
"""

from kneescope.capabilities.landmarks.config import LandmarkConfig
from kneescope.capabilities.landmarks.predict import (
    LandmarkPrediction,
    load_landmark_model,
    predict_landmarks,
)
from kneescope.capabilities.landmarks.results import result_columns
from kneescope.capabilities.landmarks.spec import KIND, LandmarkSpec
from kneescope.capabilities.landmarks.synthetic import LandmarkData, synthetic_landmarks
from kneescope.capabilities.landmarks.task import LandmarkTask

__all__ = [
    "KIND",
    "LandmarkConfig",
    "LandmarkData",
    "LandmarkPrediction",
    "LandmarkSpec",
    "LandmarkTask",
    "load_landmark_model",
    "predict_landmarks",
    "result_columns",
    "synthetic_landmarks",
]
