"""Power and sample size of a two-arm comparison (kneescope.stats.power) against simulation and
statsmodels' own t-test power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kneescope.errors import InputError
from kneescope.stats.power import power_from_se, power_two_sample, sample_size_two_sample


def test_power_is_the_rejection_rate_of_simulated_trials() -> None:
    """4000 simulated two-arm trials of the FORWARD size: the share of t tests that reject is
    the power the formula gives (binomial SE 0.006 at 0.8: within 3 SE)."""
    rng = np.random.default_rng(17001)
    effect, sd, n = 0.05, 0.07, 32
    control = rng.normal(0.0, sd, (4000, n))
    treated = rng.normal(effect, sd, (4000, n))
    p = stats.ttest_ind(treated, control, axis=1).pvalue
    empirical = float(np.mean(p < 0.05))
    expected = power_two_sample(effect, sd, n, n)
    assert abs(empirical - expected) < 3 * math.sqrt(expected * (1 - expected) / 4000)
    # no effect: the power is the significance level, and so is the rejection rate
    assert power_two_sample(0.0, sd, n, n) == pytest.approx(0.05, abs=1e-12)
    null = rng.normal(0.0, sd, (4000, 2, n))
    rate = float(np.mean(stats.ttest_ind(null[:, 0], null[:, 1], axis=1).pvalue < 0.05))
    assert abs(rate - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 4000)


def test_power_agrees_with_statsmodels_and_the_sign_does_not_matter() -> None:
    from statsmodels.stats.power import TTestIndPower  # type: ignore[import-untyped]

    for effect, sd, n_c, ratio in (
        (0.05, 0.07, 32, 1.0),
        (0.1, 0.3, 50, 2.0),
        (0.02, 0.1, 200, 0.5),
    ):
        n_t = int(n_c * ratio)
        reference = TTestIndPower().power(
            effect_size=effect / sd, nobs1=n_c, alpha=0.05, ratio=n_t / n_c
        )
        assert power_two_sample(effect, sd, n_c, n_t) == pytest.approx(reference, abs=1e-9)
        assert power_two_sample(-effect, sd, n_c, n_t) == pytest.approx(reference, abs=1e-9)
    # from an SE and df directly; an infinite df is the z test
    se = 0.07 * math.sqrt(2 / 32)
    assert power_from_se(0.05, se, 62) == pytest.approx(power_two_sample(0.05, 0.07, 32, 32))
    z = stats.norm.ppf(0.975)
    assert power_from_se(0.05, se, math.inf) == pytest.approx(
        stats.norm.sf(z - 0.05 / se) + stats.norm.cdf(-z - 0.05 / se)
    )


def test_sample_size_is_the_smallest_that_reaches_the_power() -> None:
    """FORWARD: +0.05 mm with SD 0.07: 32 per arm for 80 % (the normal approximation says 31)."""
    size = sample_size_two_sample(0.05, 0.07, power=0.8)
    assert (size.n_control, size.n_treatment, size.total) == (32, 32, 64)
    assert size.power >= 0.8 > power_two_sample(0.05, 0.07, 31, 31)
    ninety = sample_size_two_sample(0.05, 0.07, power=0.9)
    assert ninety.n_control > size.n_control
    assert (
        ninety.power
        >= 0.9
        > power_two_sample(0.05, 0.07, int(ninety.n_control) - 1, int(ninety.n_control) - 1)
    )
    # 2:1 allocation: fewer controls, more treated, reaches the power
    two = sample_size_two_sample(0.05, 0.07, power=0.8, ratio=2.0)
    assert two.n_treatment == math.ceil(2 * two.n_control) and two.power >= 0.8
    assert two.n_control < size.n_control
    # SD 4x the effect of the "6-15x too small" cohorts: n scales with (sd/effect)^2
    big = sample_size_two_sample(0.05, 0.28, power=0.8)
    assert big.n_control == pytest.approx(16 * 31.4, rel=0.05)


def test_bad_power_inputs_say_what_is_wrong() -> None:
    with pytest.raises(InputError, match="non-zero effect"):
        sample_size_two_sample(0.0, 0.07)
    with pytest.raises(InputError, match="standard deviation"):
        sample_size_two_sample(0.05, 0.0)
    with pytest.raises(InputError, match="power must be"):
        sample_size_two_sample(0.05, 0.07, power=1.0)
    with pytest.raises(InputError, match="standard error"):
        power_from_se(0.05, -1.0, 10)
    with pytest.raises(InputError, match="2 or more subjects"):
        power_two_sample(0.05, 0.07, 1, 10)
    assert math.isinf(sample_size_two_sample(1e-9, 1.0).total)
