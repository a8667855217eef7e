"""Agreement between two gradings (pure numpy): Cohen's quadratic-weighted kappa."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError


def quadratic_kappa(truth: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int) -> float:
    """Cohen's quadratic-weighted kappa of two integer gradings in ``0 .. n_classes - 1``
    (1 = perfect agreement, 0 = chance).

    Raises:
        InputError: gradings of different or zero length.
    """
    a = np.asarray(truth, dtype=np.int64).ravel()
    b = np.asarray(predicted, dtype=np.int64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise InputError("kappa needs two gradings of the same, non-zero length")
    observed = np.zeros((n_classes, n_classes))
    np.add.at(observed, (a, b), 1.0)
    idx = np.arange(n_classes)
    weights = (idx[:, None] - idx[None, :]) ** 2 / max(1, (n_classes - 1) ** 2)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / a.size
    den = float((weights * expected).sum())
    if den == 0.0:
        return 1.0 if float((weights * observed).sum()) == 0.0 else 0.0
    return 1.0 - float((weights * observed).sum()) / den
