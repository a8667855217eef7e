"""What the engine reports after every iteration (for progress bars and logs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FitProgress:
    """One iteration done.

    Attributes:
        iteration: iterations done (1-based).
        total: iterations planned.
        loss: this iteration's loss (mean over ranks).
        score: the task's validation score at the last validation (NaN before one), e.g.
            the mean Dice of a segmentation.
        elapsed_s: seconds since this process started training.
        eta_s: estimated seconds to the end.
    """

    iteration: int
    total: int
    loss: float
    score: float
    elapsed_s: float
    eta_s: float


ProgressCallback = Callable[[FitProgress], None]
