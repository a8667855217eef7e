"""JSN grade rule (kneescope.xray.jsn): exact threshold fitting and kappa."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from kneescope.errors import InputError
from kneescope.xray.jsn import (
    JSN_THRESHOLDS_MM,
    fit_thresholds,
    jsn_grade,
    jsn_grades,
    quadratic_kappa,
)


def test_fit_thresholds_separates_separable_grades() -> None:
    rng = np.random.default_rng(0)
    cuts = (4.0, 3.0, 1.5)
    x = rng.uniform(0.2, 6.5, 400)
    y = jsn_grades(x, cuts)
    fitted = fit_thresholds(x, y)
    assert np.all(jsn_grades(x, fitted) == y)
    # halfway between the neighbouring measurements on either side of each true cut
    for f, c in zip(fitted, cuts, strict=True):
        below, above = x[x < c].max(), x[x >= c].min()
        assert f == pytest.approx(0.5 * (below + above))


def test_fit_thresholds_is_the_best_rule_by_brute_force() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.uniform(0.0, 6.0, 40), 1)
    y = np.clip(np.round(4.5 - x * 0.8 + rng.normal(0.0, 0.8, 40)), 0, 3).astype(int)
    fitted = fit_thresholds(x, y)
    best_acc = float(np.mean(jsn_grades(x, fitted) == y))
    values = np.unique(x)
    candidates = np.concatenate(
        ([values[0] - 1], 0.5 * (values[1:] + values[:-1]), [values[-1] + 1])
    )
    brute = 0.0
    for t1, t2, t3 in itertools.combinations_with_replacement(candidates[::-1], 3):
        if t1 >= t2 >= t3:
            brute = max(brute, float(np.mean(jsn_grades(x, (t1, t2, t3)) == y)))
    assert best_acc == pytest.approx(brute)
    assert fitted[0] >= fitted[1] >= fitted[2]


def test_jsn_grade_of_a_missing_measurement_is_none() -> None:
    assert jsn_grade(math.nan, JSN_THRESHOLDS_MM.medial_mm) is None
    assert jsn_grade(10.0, JSN_THRESHOLDS_MM.medial_mm) == 0
    assert jsn_grade(0.0, JSN_THRESHOLDS_MM.lateral_mm) == 3
    assert list(jsn_grades([math.nan, 10.0, 0.0], JSN_THRESHOLDS_MM.medial_mm)) == [-1, 0, 3]


def test_quadratic_kappa_known_values() -> None:
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    assert quadratic_kappa(y, y, 4) == pytest.approx(1.0)
    # a grading that is the reverse of the truth disagrees as much as possible
    assert quadratic_kappa(y, 3 - y, 4) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("x", "y"),
    [([1.0, 2.0], [0, 1, 2]), ([1.0, 2.0, 3.0], [0, 1, 2]), ([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 5])],
)
def test_fit_thresholds_refuses_bad_training_data(x: list[float], y: list[int]) -> None:
    with pytest.raises(InputError):
        fit_thresholds(x, y)
