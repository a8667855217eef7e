"""Change over time: change from baseline, annualised rates and the standardised response mean.

Pure numpy/scipy on arrays; the longitudinal capability turns a results table into them.

- :func:`change_from_baseline`: absolute and percent change of values from their baselines.
- :func:`annualised_rate`: a change divided by the years it took (unit per year).
- :func:`response_summary`: over knees, the mean change with its t-based 95 % CI, the SD of
  the change, the standardised response mean SRM = mean / SD (Liang et al., Med Care 1990;
  Eckstein et al. report it for MRI cartilage thickness change) with its 95 % CI (exact from
  the noncentral t distribution for small n: SRM x sqrt(n) is noncentral-t with n - 1
  degrees of freedom and noncentrality SRM_true x sqrt(n)), the share of knees whose value
  went up and the share beyond a smallest detectable change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

BASELINE_FLOOR = 1e-9
"""A baseline whose magnitude is at or below this has no percent change (NaN)."""

MONTHS_PER_YEAR = 12.0


def change_from_baseline(
    values: ArrayLike, baseline: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Absolute and percent change of ``values`` from ``baseline`` (broadcast together).

    Args:
        values: the values at a visit, any shape, any unit.
        baseline: the same quantity at baseline, same unit, broadcastable to ``values``.

    Returns:
        ``(change, change_pct)`` float64: ``values - baseline`` (the unit of the values) and
        ``100 * change / |baseline|`` (%); NaN where either is NaN, and the percent NaN where
        ``|baseline| <= BASELINE_FLOOR``.
    """
    x = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    change = x - b
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(np.abs(b) > BASELINE_FLOOR, 100.0 * change / np.abs(b), np.nan)
    return change, np.asarray(pct, dtype=np.float64)


def annualised_rate(change: ArrayLike, months: ArrayLike) -> NDArray[np.float64]:
    """``change`` per year: ``change * 12 / months``.

    Args:
        change: change from baseline (any unit U), any shape.
        months: months since baseline (float), broadcastable to ``change``.

    Returns:
        float64 rates in U per year; NaN where ``months`` is not > 0 or either is NaN (a
        baseline has no rate).
    """
    d = np.asarray(change, dtype=np.float64)
    m = np.asarray(months, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(m > 0, d * MONTHS_PER_YEAR / m, np.nan)
    return np.asarray(rate, dtype=np.float64)


@dataclass(frozen=True)
class ResponseSummary:
    """Change over knees at one follow-up (one biomarker, one visit, one group).

    Attributes:
        n: knees with a finite change.
        mean: mean change (unit of the biomarker); NaN when ``n`` is 0.
        sd: SD of the change (``ddof=1``); NaN when ``n < 2``.
        mean_ci_low, mean_ci_high: t-based 95 % CI of the mean change (NaN when ``n < 2``).
        srm: standardised response mean, ``mean / sd`` (dimensionless); NaN when ``n < 2`` or
            ``sd`` is 0.
        srm_ci_low, srm_ci_high: exact 95 % CI of the SRM (noncentral t); NaN when the SRM
            is NaN.
        share_increase: share of knees whose change is > 0 (0..1; for thickness: apparent
            thickening).
        share_beyond_sdc: share of knees with ``|change| > sdc`` (NaN without an SDC).
    """

    n: int
    mean: float
    sd: float
    mean_ci_low: float
    mean_ci_high: float
    srm: float
    srm_ci_low: float
    srm_ci_high: float
    share_increase: float
    share_beyond_sdc: float

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a dict (for table rows)."""
        return asdict(self)


EXACT_SRM_CI_BELOW = 30
"""Below this many knees the SRM's CI is exact (noncentral t, ~5 ms each); from it on the
large-sample normal approximation ``SRM +- 1.96 sqrt(1/n + SRM^2 / (2 n))`` (~50 us): for
|SRM| <= 1.5 it differs from the exact bounds by at most 0.010 at n = 30, 0.005 at n = 50
and 0.002 at n = 100, against CI widths of 0.7, 0.55 and 0.4."""


def srm_confidence_interval(srm: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """95 % (``level``) CI of a standardised response mean from ``n`` knees.

    Exact for ``n <`` :data:`EXACT_SRM_CI_BELOW`: ``t = srm * sqrt(n)`` is noncentral t with
    ``n - 1`` degrees of freedom and noncentrality ``delta * sqrt(n)``; the bounds are the
    ``delta`` that put ``t`` at the distribution's upper and lower ``(1 - level) / 2``
    quantiles (root finding on the noncentral t CDF, decreasing in the noncentrality). For
    larger ``n``, and where scipy's noncentral t cannot be evaluated (far tails, |t| much
    larger than the degrees of freedom), the normal approximation (see
    :data:`EXACT_SRM_CI_BELOW`).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when ``srm`` is not finite or ``n < 2``.
    """
    if n < 2 or not math.isfinite(srm):
        return math.nan, math.nan
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2.0))
    se = math.sqrt(1.0 / n + srm * srm / (2.0 * n))
    approx = (srm - z * se, srm + z * se)
    if n >= EXACT_SRM_CI_BELOW:
        return approx
    from scipy.optimize import brentq
    from scipy.stats import nct

    df = n - 1
    t = srm * math.sqrt(n)
    spread = math.sqrt(1.0 + t * t / (2.0 * df))  # SD of the noncentral t, roughly
    alpha = (1.0 - level) / 2.0

    def bound(target: float) -> float:
        def f(nc: float) -> float:
            return float(nct.cdf(t, df, nc)) - target

        width = (z + 4.0) * spread
        return float(brentq(f, t - width, t + width, xtol=1e-9)) / math.sqrt(n)

    try:
        return bound(1.0 - alpha), bound(alpha)
    except ValueError:  # scipy's noncentral t fails far in its tails (|t| >> df): approximate
        return approx


def response_summary(changes: ArrayLike, sdc: float = math.nan) -> ResponseSummary:
    """Summarise one follow-up's changes over knees (see :class:`ResponseSummary`).

    Args:
        changes: ``(n,)`` change from baseline per knee (NaN: not measured, left out).
        sdc: smallest detectable change in the same unit (NaN: no share beyond it).

    Returns:
        a :class:`ResponseSummary`.
    """
    from scipy.stats import t as student_t

    arr = np.asarray(changes, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    nan = math.nan
    if n == 0:
        return ResponseSummary(0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    mean = float(arr.mean())
    up = float(np.mean(arr > 0))
    beyond = float(np.mean(np.abs(arr) > sdc)) if math.isfinite(sdc) else nan
    if n < 2:
        return ResponseSummary(n, mean, nan, nan, nan, nan, nan, nan, up, beyond)
    sd = float(arr.std(ddof=1))
    half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    srm = mean / sd if sd > 0 else nan
    low, high = srm_confidence_interval(srm, n)
    return ResponseSummary(n, mean, sd, mean - half, mean + half, srm, low, high, up, beyond)
