"""Learning-rate schedules: a pure function of the iteration (so resume needs no state)."""

from __future__ import annotations

import math
from typing import Literal


def learning_rate(
    schedule: Literal["poly", "cosine", "constant"],
    iteration: int,
    total: int,
    peak: float,
    warmup: int = 0,
) -> float:
    """The learning rate of 0-based ``iteration`` out of ``total``.

    Warm-up rises linearly over ``warmup`` steps (``peak / warmup`` .. ``peak``); then
    ``"poly"`` is ``peak * (1 - t/T)^0.9``, ``"cosine"`` a half cosine to 0 and
    ``"constant"`` stays at ``peak`` (``t`` counts from the iteration's start, ``T = total``).
    """
    if iteration < warmup:
        return peak * (iteration + 1) / warmup
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        span = max(1, total - warmup)
        return peak * 0.5 * (1.0 + math.cos(math.pi * (iteration - warmup) / span))
    return float(peak * (1.0 - iteration / total) ** 0.9)
