"""Power and sample size of a two-arm comparison of means (two-sided t test).

The trial analysis estimates a treatment difference and its standard error (SE) from an MMRM;
what a future trial of another size would see follows from the SE: with ``n_c`` control and
``n_t`` treated subjects the SE of a difference is ``sd * sqrt(1/n_c + 1/n_t)``, so a fitted SE
gives the *effective* standard deviation ``sd = se / sqrt(1/n_c + 1/n_t)`` (the SD of the
change at the visit after the model's covariate adjustment, and inflated by the missing visits
of the fitted trial). Power is exact for the t test: the test statistic follows a noncentral t
distribution with noncentrality ``effect / se`` and the comparison's degrees of freedom
(``n_c + n_t - 2`` unless given, e.g. the MMRM's Satterthwaite df):

    power = P(T > t_crit) + P(T < -t_crit),  T ~ t'(df, effect / se),
    t_crit = t_{1 - alpha/2}(df).

Sample size: the smallest ``n`` per arm (times ``ratio`` for the treated arm) whose power
reaches the target. Pure numpy/scipy: numbers in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from kneescope.errors import InputError

MAX_SUBJECTS_PER_ARM = 10_000_000
"""Sample sizes beyond this are reported as not reachable (``math.inf``)."""


def _check(alpha: float, effect: float | None = None) -> None:
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be between 0 and 1 (got {alpha})")
    if effect is not None and not math.isfinite(effect):
        raise InputError(f"the effect must be a finite number (got {effect})")


def power_from_se(effect: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Power of a two-sided t test of a difference whose SE is ``se``.

    Args:
        effect: the true difference (any sign; the endpoint's unit, e.g. mm).
        se: the standard error of the estimated difference (same unit), > 0.
        df: degrees of freedom of the test (> 0; ``math.inf`` for a z test).
        alpha: two-sided significance level.

    Returns:
        The probability of rejecting ``difference = 0`` (between ``alpha`` and 1).

    Raises:
        InputError: se <= 0, df <= 0, alpha outside (0, 1).
    """
    _check(alpha, effect)
    if not (se > 0.0 and math.isfinite(se)):
        raise InputError(f"the standard error must be a positive number (got {se})")
    if not df > 0.0:
        raise InputError(f"the degrees of freedom must be positive (got {df})")
    ncp = effect / se
    if math.isinf(df):
        z = float(stats.norm.ppf(1.0 - alpha / 2.0))
        return float(stats.norm.sf(z - ncp) + stats.norm.cdf(-z - ncp))
    t_crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    return float(stats.nct.sf(t_crit, df, ncp) + stats.nct.cdf(-t_crit, df, ncp))


def power_two_sample(
    effect: float,
    sd: float,
    n_control: int,
    n_treatment: int,
    alpha: float = 0.05,
    df: float | None = None,
) -> float:
    """Power of the two-sided two-sample t test for a true difference ``effect``.

    Args:
        effect: the true difference of means (endpoint unit).
        sd: the (common) standard deviation of one subject's value (endpoint unit), > 0.
        n_control, n_treatment: subjects per arm (>= 2 each).
        alpha: two-sided significance level.
        df: degrees of freedom (default ``n_control + n_treatment - 2``).

    Raises:
        InputError: sd <= 0 or an arm with fewer than 2 subjects.
    """
    if n_control < 2 or n_treatment < 2:
        raise InputError(f"each arm needs 2 or more subjects (got {n_control}, {n_treatment})")
    if not (sd > 0.0 and math.isfinite(sd)):
        raise InputError(f"the standard deviation must be a positive number (got {sd})")
    se = sd * math.sqrt(1.0 / n_control + 1.0 / n_treatment)
    dof = float(n_control + n_treatment - 2) if df is None else df
    return power_from_se(effect, se, dof, alpha)


@dataclass(frozen=True)
class SampleSize:
    """Subjects needed per arm (``math.inf`` when beyond :data:`MAX_SUBJECTS_PER_ARM`).

    Attributes:
        n_control, n_treatment: subjects per arm; total: their sum.
        power: the power reached with them (exact, t test).
    """

    n_control: float
    n_treatment: float
    total: float
    power: float


def sample_size_two_sample(
    effect: float,
    sd: float,
    power: float = 0.8,
    alpha: float = 0.05,
    ratio: float = 1.0,
) -> SampleSize:
    """The smallest trial whose two-sided t test reaches ``power`` for ``effect``.

    Args:
        effect: the difference to detect (endpoint unit; sign does not matter), != 0.
        sd: the standard deviation of one subject's value (endpoint unit), > 0.
        power: the wanted power, in (alpha, 1).
        alpha: two-sided significance level.
        ratio: treated subjects per control subject (``n_treatment = ceil(ratio * n)``).

    Returns:
        :class:`SampleSize` with whole subjects per arm.

    Raises:
        InputError: effect 0, sd <= 0, power or alpha outside their range, ratio <= 0.
    """
    _check(alpha, effect)
    if effect == 0.0:
        raise InputError("a sample size needs a non-zero effect to detect")
    if not (sd > 0.0 and math.isfinite(sd)):
        raise InputError(f"the standard deviation must be a positive number (got {sd})")
    if not alpha < power < 1.0:
        raise InputError(f"power must be between alpha ({alpha}) and 1 (got {power})")
    if not ratio > 0.0:
        raise InputError(f"ratio must be positive (got {ratio})")

    def arms(n: int) -> tuple[int, int]:
        return n, max(2, math.ceil(ratio * n))

    def reached(n: int) -> float:
        c, t = arms(n)
        return power_two_sample(effect, sd, c, t, alpha)

    # start from the normal approximation, then step to the exact t-test answer
    z = float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))
    guess = (1.0 + 1.0 / ratio) * (z * sd / effect) ** 2
    if guess > MAX_SUBJECTS_PER_ARM:
        return SampleSize(math.inf, math.inf, math.inf, power)
    n = max(2, math.ceil(guess))
    while n > 2 and reached(n - 1) >= power:
        n -= 1
    while reached(n) < power:
        n += 1
    c, t = arms(n)
    return SampleSize(float(c), float(t), float(c + t), reached(n))
