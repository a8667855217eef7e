"""Association of knee-level predictors with WOMAC knee pain: a random-intercept model per
subject (both knees and every visit of a subject share the intercept).

Input: a tidy table, one row per knee x visit, with ``subject``, ``side``, ``visit``, the pain
score and the predictor columns. :func:`pain_association` fits
:func:`~kneescope.stats.random_intercept.fit_censored_mixed` (the score's floor, ceiling and
rounding modelled) and/or :func:`~kneescope.stats.random_intercept.fit_linear_mixed`
(statsmodels MixedLM on the recorded score) and reports the coefficients with 95 % CIs and
how many knee-visits sit at the floor or the ceiling (what biases the linear fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kneescope.errors import InputError
from kneescope.stats.random_intercept import (
    RandomInterceptFit,
    fit_censored_mixed,
    fit_linear_mixed,
)

if TYPE_CHECKING:
    import pandas as pd

Method = Literal["censored", "linear", "both"]


@dataclass(frozen=True)
class PainAssociation:
    """What :func:`pain_association` found.

    Attributes:
        fits: the fitted models, the headline first (censored when fitted).
        predictors: predictor column names (each coefficient in pain points per unit).
        knee_visits, knees, subjects: rows used, distinct knees and subjects.
        dropped: rows left out for a missing pain score or predictor.
        at_floor, at_ceiling: share of rows at the score's floor / ceiling.
        score_range: (floor, ceiling).
    """

    fits: tuple[RandomInterceptFit, ...]
    predictors: tuple[str, ...]
    knee_visits: int
    knees: int
    subjects: int
    dropped: int
    at_floor: float
    at_ceiling: float
    score_range: tuple[float, float]

    @property
    def headline(self) -> RandomInterceptFit:
        return self.fits[0]

    def coefficient_rows(self) -> list[dict[str, Any]]:
        """Every model's coefficients: method, term, estimate, se, ci_low, ci_high, p_value."""
        return [row for fit in self.fits for row in fit.rows()]

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures: counts, floor/ceiling shares, headline coefficients with CIs,
        each model's variance components and notes."""
        head = self.headline
        return {
            "method": head.method,
            "knee_visits": self.knee_visits,
            "knees": self.knees,
            "subjects": self.subjects,
            "dropped_rows": self.dropped,
            "share_at_floor": self.at_floor,
            "share_at_ceiling": self.at_ceiling,
            "score_range": list(self.score_range),
            "coefficients": {
                name: {
                    "estimate": float(head.coef[i]),
                    "ci_low": float(head.ci_low[i]),
                    "ci_high": float(head.ci_high[i]),
                    "p_value": float(head.p_value[i]),
                }
                for i, name in enumerate(head.names)
            },
            "models": [
                {
                    "method": fit.method,
                    "residual_sd": fit.sigma,
                    "subject_sd": fit.tau,
                    "converged": fit.converged,
                    "log_likelihood": fit.log_likelihood,
                    "notes": list(fit.notes),
                }
                for fit in self.fits
            ],
        }


def pain_association(
    table: pd.DataFrame,
    predictors: Sequence[str],
    *,
    pain: str = "pain",
    method: Method = "both",
    score_range: tuple[float, float] = (0.0, 20.0),
) -> PainAssociation:
    """Fit pain ~ predictors with a random intercept per subject.

    Args:
        table: one row per knee x visit: ``subject``, ``side``, ``visit``, ``pain`` and the
            ``predictors`` (numeric; rows with a missing value are dropped and counted).
        predictors: predictor columns (e.g. ``klg``, ``effusion``, ``bmi``).
        pain: the pain score column (whole points within ``score_range``).
        method: ``censored``, ``linear`` or ``both`` (censored first).
        score_range: the score's floor and ceiling.

    Raises:
        InputError: a missing column, too few subjects, a constant or collinear predictor,
            scores outside the range.
    """
    import pandas as pd

    needed = ["subject", "side", "visit", pain, *predictors]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(
            f"the pain table lacks column(s) {missing}; it has {', '.join(map(str, table.columns))}"
        )
    if not predictors:
        raise InputError("no predictors given; name at least one column")
    data = table.loc[:, needed].copy()
    for column in [pain, *predictors]:
        data[column] = pd.to_numeric(data[column], errors="coerce")
    complete = data.dropna(subset=[pain, *predictors])
    y = complete[pain].to_numpy(np.float64)
    x = complete.loc[:, list(predictors)].to_numpy(np.float64)
    groups = complete["subject"].astype(str).to_numpy()
    low, high = score_range
    fits: list[RandomInterceptFit] = []
    if method in ("censored", "both"):
        fits.append(fit_censored_mixed(y, x, groups, predictors, low=low, high=high))
    if method in ("linear", "both"):
        fits.append(fit_linear_mixed(y, x, groups, predictors))
    knees = complete.loc[:, ["subject", "side"]].astype(str).drop_duplicates()
    return PainAssociation(
        fits=tuple(fits),
        predictors=tuple(predictors),
        knee_visits=len(complete),
        knees=len(knees),
        subjects=int(complete["subject"].astype(str).nunique()),
        dropped=len(data) - len(complete),
        at_floor=float(np.mean(y <= low)) if len(y) else float("nan"),
        at_ceiling=float(np.mean(y >= high)) if len(y) else float("nan"),
        score_range=(float(low), float(high)),
    )
