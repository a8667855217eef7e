"""Fit a classification model file's temperature again on a (new) validation set.

``kneescope train`` already fits the temperature on the training run's validation split; this
is for a model trained before calibration existed, or for a site whose images differ: the
logits of ``data`` give the temperature (by NLL), and the model is written again with it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.capabilities.classification.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)
from kneescope.capabilities.classification.predict import load_classifier, predict_logits
from kneescope.capabilities.classification.synthetic import ClassificationData
from kneescope.errors import InputError
from kneescope.models.model_file import save_model_file


def recalibrate(model_path: Path, data: ClassificationData, out_path: Path) -> dict[str, Any]:
    """Write ``model_path`` to ``out_path`` with the temperature fitted on ``data``.

    Args:
        model_path: a ``classification`` model file.
        data: labelled images at the model's input size (pairs used by a paired model).
        out_path: where the calibrated model goes (atomically; may be ``model_path``).

    Returns:
        ``temperature``, ``ece_uncalibrated``, ``ece`` (15 bins) and ``n`` on ``data``.

    Raises:
        InputError: classes that are not the model's.
        ModelError: the model file cannot be used.
    """
    classifier = load_classifier(model_path)
    if tuple(data.classes) != classifier.spec.classes:
        raise InputError(
            f"the data's classes {list(data.classes)} are not the model's "
            f"{list(classifier.spec.classes)}"
        )
    pairs = None if data.pairs is None else data.images[np.asarray(data.pairs)]
    logits = predict_logits(classifier, data.images, pairs)
    temperature = fit_temperature(logits, data.labels)
    report = {
        "temperature": temperature,
        "ece_uncalibrated": expected_calibration_error(apply_temperature(logits, 1.0), data.labels),
        "ece": expected_calibration_error(apply_temperature(logits, temperature), data.labels),
        "n": len(data.labels),
    }
    model = classifier.model_file
    metrics = dict(model.metrics or {})
    values = {**dict(metrics.get("values", {})), **report}
    calibrated = replace(
        model,
        spec={**model.spec, "temperature": temperature},
        metrics={**metrics, "values": values},
    )
    save_model_file(calibrated, out_path)
    return report
