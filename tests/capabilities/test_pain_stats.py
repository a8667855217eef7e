"""Random-intercept pain models and Gaussian-mixture phenotypes against known truth.

The pain data follow the generator's own formula (:mod:`kneescope.synth.pain`): a subject
propensity shared by both knees and all visits, per-knee-visit noise, rounding to whole
points and clipping to 0..20. So the coefficients to recover are known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from kneescope.errors import InputError
from kneescope.stats.clusters import agreement, bootstrap_stability, select_mixture
from kneescope.stats.random_intercept import (
    fit_censored_mixed,
    fit_linear_mixed,
    score_intervals,
)
from kneescope.synth.pain import (
    PAIN_NOISE_SD,
    PAIN_PER_BMI,
    PAIN_PER_EFFUSION,
    PAIN_PER_KLG,
    PAIN_PROPENSITY_SD,
    womac_pain,
)

NAMES = ["klg", "effusion", "bmi"]


def pain_data(
    subjects: int, seed: int, propensity_mean: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pain (n,), X (n, 3) klg/effusion/bmi, subject (n,)): 2 knees x 3 visits each."""
    rng = np.random.default_rng(seed)
    per = 6
    subject = np.repeat(np.arange(subjects), per)
    propensity = rng.normal(propensity_mean, PAIN_PROPENSITY_SD, subjects)[subject]
    bmi = np.clip(rng.normal(28.5, 4.5, subjects), 18.5, 45)[subject]
    klg = rng.integers(0, 5, len(subject))
    effusion = np.clip(0.15 + 0.15 * (klg + rng.uniform(0, 1, len(subject))), 0, 1)
    effusion = np.clip(effusion + rng.normal(0, 0.08, len(subject)), 0, 1)
    noise = rng.normal(0, PAIN_NOISE_SD, len(subject))
    pain = womac_pain(propensity, klg, effusion, bmi, noise)
    return pain.astype(float), np.column_stack([klg, effusion, bmi]), subject


def test_censored_model_recovers_the_generator_coefficients_where_the_floor_biases_lmm() -> None:
    # a cohort with little pain: two in five knee-visits sit at the floor 0
    pain, x, subject = pain_data(600, seed=11, propensity_mean=-3.5)
    assert 0.35 < np.mean(pain == 0) < 0.5
    truth = {"klg": PAIN_PER_KLG, "effusion": PAIN_PER_EFFUSION, "bmi": PAIN_PER_BMI}
    censored = fit_censored_mixed(pain, x, subject, NAMES)
    assert censored.converged and censored.method == "censored-ml"
    for name, value in truth.items():
        estimate, low, high = censored.coefficient(name)
        assert low <= value <= high, (name, estimate, low, high)
    assert censored.sigma == pytest.approx(PAIN_NOISE_SD, rel=0.15)
    assert censored.tau == pytest.approx(PAIN_PROPENSITY_SD, rel=0.2)
    linear = fit_linear_mixed(pain, x, subject, NAMES)
    klg, _, klg_high = linear.coefficient("klg")
    # the floor attenuates the linear model's slopes: its CIs miss the truth
    assert klg_high < PAIN_PER_KLG
    assert klg < censored.coefficient("klg")[0]
    assert linear.coefficient("effusion")[0] < censored.coefficient("effusion")[0]


def test_both_models_agree_when_nothing_is_clipped() -> None:
    pain, x, subject = pain_data(400, seed=12, propensity_mean=6.0)
    assert np.mean(pain == 0) < 0.01 and np.mean(pain == 20) < 0.01
    linear = fit_linear_mixed(pain, x, subject, NAMES)
    censored = fit_censored_mixed(pain, x, subject, NAMES)
    assert linear.converged
    for name in NAMES:
        a, low, high = linear.coefficient(name)
        b = censored.coefficient(name)[0]
        assert abs(a - b) < 0.25 * (high - low)
    rows = linear.rows()
    assert [r["term"] for r in rows] == ["Intercept", *NAMES]
    assert all(r["ci_low"] < r["estimate"] < r["ci_high"] for r in rows)


def test_score_intervals_read_floor_ceiling_and_rounding() -> None:
    lower, upper = score_intervals([0, 3, 20], 0, 20)
    assert lower.tolist() == [-np.inf, 2.5, 19.5]
    assert upper.tolist() == [0.5, 3.5, np.inf]
    with pytest.raises(InputError, match=r"lie in \[0, 20\]"):
        score_intervals([21], 0, 20)
    with pytest.raises(InputError, match="multiples of 1"):
        score_intervals([2.5], 0, 20)


def test_bad_model_input_is_one_clear_error() -> None:
    pain, x, subject = pain_data(50, seed=1, propensity_mean=3.0)
    with pytest.raises(InputError, match="collinear"):
        fit_linear_mixed(pain, np.column_stack([x, 2 * x[:, 0]]), subject, [*NAMES, "klg2"])
    with pytest.raises(InputError, match="do not vary"):
        fit_censored_mixed(pain, np.column_stack([x, np.ones(len(x))]), subject, [*NAMES, "c"])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        fit_linear_mixed(pain, bad, subject, NAMES)
    with pytest.raises(InputError, match="too few"):
        fit_linear_mixed(pain[:6], x[:6], subject[:6], NAMES)


def test_mixture_finds_known_groups_by_bic_and_they_are_stable() -> None:
    rng = np.random.default_rng(5)
    n = 300
    truth = (rng.random(n) < 0.3).astype(int)
    centres = np.array([[0.0, 0.0, 0.0], [3.0, -2.5, 1.0]])
    x = centres[truth] + rng.normal(0, 0.7, (n, 3))
    x[:, 2] = x[:, 2] * 50 + 200  # units do not matter: standardised inside
    sel = select_mixture(x, (1, 2, 3, 4), seed=0)
    assert sel.k == 2
    assert sel.bic[2] < sel.bic[1] and sel.bic[2] < sel.bic[3]
    assert sel.sizes[0] >= sel.sizes[1]  # ordered by size
    assert agreement(sel.labels, truth) > 0.9
    assert sel.means[1] == pytest.approx(centres[1] * [1, 1, 50] + [0, 0, 200], abs=0.5 * 50)
    groups = np.arange(n) // 2  # two rows per subject, resampled together
    stab = bootstrap_stability(x, sel, groups, resamples=10, seed=1)
    assert stab.mean > 0.85 and stab.low <= stab.mean <= stab.high
    assert set(stab.k_chosen.tolist()) == {2}


def test_no_structure_gives_one_cluster_and_unstable_forced_splits() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 2))
    sel = select_mixture(x, (1, 2, 3), seed=0)
    assert sel.k == 1
    forced = select_mixture(x, (3,), seed=0)
    stab = bootstrap_stability(x, forced, resamples=10, seed=2)
    assert stab.mean < 0.8  # a split of one Gaussian is not reproducible
    with pytest.raises(InputError, match="at least 10 rows"):
        select_mixture(x[:5])
    with pytest.raises(InputError, match="does not vary"):
        select_mixture(np.column_stack([x, np.ones(300)]))


def test_bic_never_picks_clusters_too_small_for_their_covariance() -> None:
    """16 knees of pure noise in 4 features: a full-covariance cluster of 1-4 knees is
    singular and BIC would reward it (k = 5 with a 1-knee cluster); such ks are rejected with
    the reason, and the noise is one cluster."""
    x = np.random.default_rng(0).normal(size=(16, 4))
    sel = select_mixture(x, (1, 2, 3, 4, 5), seed=0)
    assert sel.k == 1 and sel.sizes.tolist() == [16]
    assert set(sel.rejected) == {2, 3, 4, 5}
    assert "fewer than features + 1 = 5" in sel.rejected[2]
    assert sel.rejected[5] == "5 clusters of at least features + 1 = 5 rows need 25"
    stab = bootstrap_stability(x, sel, resamples=5, seed=1, reselect=(1, 2, 3, 4, 5))
    assert stab.k_chosen.max() <= 3  # 4 clusters of 5 knees cannot fit 16
    with pytest.raises(InputError, match="features \\+ 1 = 5"):
        select_mixture(x, (4, 5), seed=0)
