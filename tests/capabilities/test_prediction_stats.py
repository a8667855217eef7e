"""kneescope.stats.discrimination against known truth: AUC and AP as scikit-learn defines them,
the binormal AUC Phi(delta / sqrt 2), subject-clustered bootstrap CIs, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from kneescope.errors import InputError
from kneescope.stats.discrimination import (
    auc_many,
    average_precision,
    bootstrap_difference,
    bootstrap_metric,
    brier_score,
    calibration_bins,
    concordance,
    discrimination,
    expected_calibration_error,
    roc_auc,
    subject_bootstrap_weights,
)


def test_auc_and_ap_equal_scikit_learn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(1)
    for n in (7, 300):
        y = (rng.random(n) < 0.3).astype(float)
        y[:2] = (0.0, 1.0)
        s = np.round(rng.normal(size=n) + y, 1)  # many ties
        w = rng.integers(0, 4, size=n).astype(float)
        w[:2] = 1.0
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert roc_auc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
        assert average_precision(y, s, w) == pytest.approx(
            average_precision_score(y, s, sample_weight=w), abs=1e-12
        )


def test_binormal_auc_is_recovered_and_covered_by_the_ci() -> None:
    rng = np.random.default_rng(2)
    delta = 1.0
    n = 4000
    y = (rng.random(n) < 0.25).astype(float)
    s = rng.normal(size=n) + delta * y
    truth = float(norm.cdf(delta / math.sqrt(2)))  # 0.760
    ci = bootstrap_metric(y, s, np.arange(n), "auc", n_boot=400, seed=0)
    assert ci.low < truth < ci.high
    assert ci.high - ci.low < 0.05
    assert abs(ci.value - truth) < 0.02


def test_bootstrap_resamples_subjects_not_knees() -> None:
    """Two identical knees per subject carry the information of one: the subject bootstrap's
    CI must be as wide as the one-knee-per-subject CI, the naive knee bootstrap's narrower."""
    rng = np.random.default_rng(3)
    n = 600
    y = (rng.random(n) < 0.4).astype(float)
    s = rng.normal(size=n) + 0.8 * y
    single = bootstrap_metric(y, s, np.arange(n), n_boot=600, seed=1)
    y2, s2 = np.repeat(y, 2), np.repeat(s, 2)
    by_subject = bootstrap_metric(y2, s2, np.repeat(np.arange(n), 2), n_boot=600, seed=1)
    naive = bootstrap_metric(y2, s2, np.arange(2 * n), n_boot=600, seed=1)
    width = single.high - single.low
    assert by_subject.high - by_subject.low == pytest.approx(width, rel=0.2)
    assert naive.high - naive.low < 0.85 * width
    w = subject_bootstrap_weights(np.repeat(np.arange(n), 2), 5, 0)
    assert np.all(w[:, 0::2] == w[:, 1::2])  # both knees of a subject drawn together
    assert np.allclose(w.sum(axis=1), 2 * n)


def test_paired_difference_and_discrimination_summary() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    y = (rng.random(n) < 0.3).astype(float)
    strong = rng.normal(size=n) + 1.5 * y
    weak = strong + rng.normal(scale=2.0, size=n)
    gap = bootstrap_difference(y, weak, strong, np.arange(n), n_boot=300)
    assert gap.value < 0 and gap.high < 0  # the noisier score is worse, significantly
    same = bootstrap_difference(y, strong, strong, np.arange(n), n_boot=50)
    assert same.value == 0 and same.low == 0 and same.high == 0
    d = discrimination(y, strong, np.arange(n) // 2, n_boot=200)
    assert d.events == int(y.sum()) and d.subjects == n // 2
    assert d.auc.low < d.auc.value < d.auc.high
    assert d.prevalence < d.ap.value < 1  # AP above its chance level
    noise = discrimination(y, rng.normal(size=n), np.arange(n), n_boot=300)
    assert noise.auc.low < 0.5 < noise.auc.high


def test_bootstrap_rows_without_both_classes_are_nan() -> None:
    y = np.array([1.0, 0.0, 0.0])
    w = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    out = auc_many(y, np.array([0.9, 0.1, 0.2]), w)
    assert math.isnan(out[0]) and out[1] == 1.0


def test_calibration_of_calibrated_and_miscalibrated_probabilities() -> None:
    rng = np.random.default_rng(5)
    p = rng.random(20000)
    y = (rng.random(p.size) < p).astype(float)
    good = calibration_bins(p, y, 10, "quantile")
    assert sum(int(b["count"]) for b in good) == p.size
    assert expected_calibration_error(good) < 0.02
    bad = calibration_bins(p**2, y, 10, "uniform")
    assert expected_calibration_error(bad) > 0.1
    assert brier_score(p, y) == pytest.approx(np.mean(p * (1 - p)), abs=0.01)


def test_concordance_of_a_perfect_and_a_reversed_risk() -> None:
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([1, 1, 1, 1, 0])
    risk = -time  # earlier event, higher risk
    assert concordance(time, risk, event) == 1.0
    assert concordance(time, time, event) == 0.0
    assert math.isnan(concordance(time, risk, np.zeros(5)))


def test_bad_input_is_refused_with_a_reason() -> None:
    with pytest.raises(InputError, match="0 or 1"):
        roc_auc(np.array([0.0, 2.0]), np.array([0.1, 0.2]))
    with pytest.raises(InputError, match="finite"):
        roc_auc(np.array([0.0, 1.0]), np.array([np.nan, 0.2]))
    with pytest.raises(InputError, match="unknown metric"):
        bootstrap_metric([0, 1], [0.1, 0.2], [1, 2], "f1")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        calibration_bins(np.array([1.5, 0.2]), np.array([1.0, 0.0]))
