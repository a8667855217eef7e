"""Metrics and soft targets for ordered classes (grades such as Kellgren-Lawrence 0-4).

``quadratic_kappa`` is :func:`kneescope.core.agreement.quadratic_kappa`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy.stats import rankdata

from kneescope.core.agreement import quadratic_kappa


def ordinal_targets(n_classes: int, sigma: float) -> npt.NDArray[np.float32]:
    """``(n_classes, n_classes)`` soft targets: row ``y`` is ``exp(-(k - y)^2 / (2 sigma^2))``
    over grades ``k``, normalised to sum 1."""
    k = np.arange(n_classes, dtype=np.float64)
    weights = np.exp(-((k[None, :] - k[:, None]) ** 2) / (2.0 * sigma * sigma))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def binary_auc(scores: npt.NDArray[Any], positive: npt.NDArray[np.bool_]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None without both classes."""
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def grade_summary(
    probabilities: npt.NDArray[Any], truth: npt.NDArray[Any]
) -> dict[str, float | None]:
    """``accuracy``, ``quadratic_kappa``, ``mean_abs_error`` (grades) and ``auc_at_least_2``
    of ``(N, K)`` probabilities against ``(N,)`` grades."""
    grades = np.asarray(truth, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    return {
        "accuracy": float((predicted == grades).mean()),
        "quadratic_kappa": quadratic_kappa(grades, predicted, probabilities.shape[1]),
        "mean_abs_error": float(np.abs(predicted - grades).mean()),
        "auc_at_least_2": binary_auc(probabilities[:, 2:].sum(axis=1), grades >= 2),
    }


def grade_metrics(logits: torch.Tensor, truth: torch.Tensor) -> dict[str, float | None]:
    """``quadratic_kappa``, ``mean_abs_error`` (grades) and ``auc_at_least_2`` of ``(N, K)``
    logits against ``(N,)`` grades."""
    probabilities = torch.softmax(logits.double(), dim=1).numpy()
    summary = grade_summary(probabilities, truth.numpy())
    del summary["accuracy"]
    return summary
