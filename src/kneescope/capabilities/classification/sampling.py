"""Which training images a classification batch draws (2D images and 3D volumes alike)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def batch_indices(
    rng: np.random.Generator,
    size: int,
    train_size: int,
    by_class: Sequence[np.ndarray[Any, Any]],
    balanced: bool,
) -> np.ndarray[Any, Any]:
    """``(size,)`` int64 indices into the training set.

    ``balanced``: a class drawn uniformly among the classes present (``by_class[k]``: the
    indices of class ``k``), then one of its images; otherwise images uniformly.
    """
    if not balanced:
        return rng.integers(0, train_size, size=size)
    present = [members for members in by_class if len(members)]
    which = rng.integers(0, len(present), size=size)
    return np.array([present[k][rng.integers(0, len(present[k]))] for k in which])
