"""Responder analysis: the share of knees whose change from baseline lies beyond a threshold,
per arm, and the risk difference (treatment - control) with its 95 % CI.

A knee is a responder at a visit when its change from baseline is above (``direction =
"above"``) or below (``"below"``) the threshold. Only knees measured at baseline and at that
visit count (observed cases; a responder analysis does not impute, and the MMRM is the
analysis that uses every visit). The CI of the risk difference is Newcombe's hybrid score
interval (Newcombe 1998, method 10; statsmodels ``confint_proportions_2indep``), the p value
the score test of equal proportions (``test_proportions_2indep``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kneescope.capabilities.trial.config import ResponderConfig
from kneescope.errors import InputError


@dataclass(frozen=True)
class ResponderResult:
    """One responder definition's result.

    Attributes:
        endpoint, visit, threshold, direction: the definition.
        n_control, n_treatment: knees measured at baseline and at the visit, per arm.
        responders_control, responders_treatment: responders per arm.
        rate_control, rate_treatment: their shares (NaN for an arm with no knee).
        risk_difference: rate_treatment - rate_control.
        ci_low, ci_high: its (1 - alpha) CI (Newcombe hybrid score).
        p_value: score test of equal rates.
    """

    endpoint: str
    visit: str
    threshold: float
    direction: str
    n_control: int
    n_treatment: int
    responders_control: int
    responders_treatment: int
    rate_control: float
    rate_treatment: float
    risk_difference: float
    ci_low: float
    ci_high: float
    p_value: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def risk_difference(
    responders_treatment: int,
    n_treatment: int,
    responders_control: int,
    n_control: int,
    alpha: float = 0.05,
) -> tuple[float, float, float, float]:
    """(difference, ci_low, ci_high, p) of two independent proportions (treatment - control).

    NaN throughout when an arm has no knee; the score test's p is 1 when both arms are all
    responders or all non-responders (no evidence of a difference).
    """
    from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
        confint_proportions_2indep,
        test_proportions_2indep,
    )

    if n_treatment == 0 or n_control == 0:
        return math.nan, math.nan, math.nan, math.nan
    diff = responders_treatment / n_treatment - responders_control / n_control
    low, high = confint_proportions_2indep(
        responders_treatment,
        n_treatment,
        responders_control,
        n_control,
        method="newcomb",
        compare="diff",
        alpha=alpha,
    )
    pooled = (responders_treatment + responders_control) / (n_treatment + n_control)
    if pooled in (0.0, 1.0):
        p = 1.0
    else:
        p = float(
            test_proportions_2indep(
                responders_treatment,
                n_treatment,
                responders_control,
                n_control,
                method="score",
                compare="diff",
            ).pvalue
        )
    return float(diff), float(low), float(high), p


def responders(
    frame: pd.DataFrame,
    definition: ResponderConfig,
    *,
    baseline: str,
    visit: str,
    alpha: float = 0.05,
) -> ResponderResult:
    """The responder analysis of one definition at ``visit``.

    Args:
        frame: :attr:`~.data.TrialData.frame` (one knee per subject; ``subject``, ``visit``,
            ``arm`` and the endpoint column).
        definition: the responder definition (its ``visit`` is already resolved to ``visit``).
        baseline: the baseline visit code.
        visit: the visit whose change counts.
        alpha: 1 - the CI level.

    Raises:
        InputError: the endpoint is not a column of ``frame``.
    """
    endpoint = definition.endpoint
    if endpoint not in frame.columns:
        raise InputError(
            f"responder endpoint {endpoint!r} is not an analysed endpoint; add it to "
            "analysis.endpoints"
        )
    base = frame.loc[frame["visit"] == baseline, ["subject", "arm", endpoint]]
    late = frame.loc[frame["visit"] == visit, ["subject", endpoint]]
    both = base.merge(late, on="subject", suffixes=("_base", "_late")).dropna()
    change = (both[f"{endpoint}_late"] - both[f"{endpoint}_base"]).to_numpy(np.float64)
    if definition.direction == "above":
        responds = change > definition.threshold
    else:
        responds = change < definition.threshold
    arm = both["arm"].to_numpy()
    n_c = int((arm == "control").sum())
    n_t = int((arm == "treatment").sum())
    r_c = int(responds[arm == "control"].sum())
    r_t = int(responds[arm == "treatment"].sum())
    diff, low, high, p = risk_difference(r_t, n_t, r_c, n_c, alpha)
    return ResponderResult(
        endpoint=endpoint,
        visit=visit,
        threshold=definition.threshold,
        direction=definition.direction,
        n_control=n_c,
        n_treatment=n_t,
        responders_control=r_c,
        responders_treatment=r_t,
        rate_control=r_c / n_c if n_c else math.nan,
        rate_treatment=r_t / n_t if n_t else math.nan,
        risk_difference=diff,
        ci_low=low,
        ci_high=high,
        p_value=p,
    )
