"""Discrimination and calibration of predicted risks against binary outcomes: pure arrays.

Definitions (what every prediction figure of kneescope means):

* **AUC**: area under the ROC curve, ``P(score of a random event > score of a random
  non-event)`` with ties counted one half (the Mann-Whitney form, scikit-learn
  ``roc_auc_score``); 0.5 = chance, 1 = perfect ordering.
* **AP**: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over the thresholds (scikit-learn
  ``average_precision_score``); its chance level is the prevalence.
* **bootstrap 95 % CI, by subject**: the knees of a subject are not independent (both knees
  share the subject's age, BMI and disease propensity), so the subjects are resampled with
  replacement (a cluster bootstrap) and each replicate keeps every knee of a drawn subject as
  often as the subject was drawn (sample weights). The interval is the 2.5th and 97.5th
  percentiles of the replicates (percentile bootstrap); replicates with no event or no
  non-event are left out and counted.
* **paired difference**: the same replicates for two scores of the same knees, the interval
  of ``metric(a) - metric(b)`` (a model against the oracle: the gap and its CI).
* **calibration**: bins of the predicted probability (equal-width over [0, 1] or
  equal-count quantile bins), per bin the mean prediction and the observed share; expected
  calibration error ``ECE = sum_b (n_b / N) |mean p_b - observed_b|``; Brier score
  ``mean (p - y)^2``.
* **C-index**: Harrell's concordance of a risk score with (time, event) data: lifelines'
  ``concordance_index`` on the negated risk (higher risk, earlier event).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError

Array = npt.NDArray[np.float64]
Metric = Callable[[Array, Array, Array | None], float]

DEFAULT_BOOTSTRAP = 1000
"""Bootstrap replicates of a confidence interval."""


def _check(y: Any, score: Any, what: str = "score") -> tuple[Array, Array]:
    y_arr = np.asarray(y, dtype=np.float64)
    s_arr = np.asarray(score, dtype=np.float64)
    if y_arr.ndim != 1 or s_arr.shape != y_arr.shape:
        raise InputError(f"outcomes {y_arr.shape} and {what}s {s_arr.shape} must be 1-D alike")
    if not np.all(np.isin(y_arr, (0.0, 1.0))):
        raise InputError("outcomes must be 0 or 1 (no missing values)")
    if not np.all(np.isfinite(s_arr)):
        raise InputError(f"every {what} must be finite (impute or drop missing ones first)")
    return y_arr, s_arr


def _tie_groups(score: Array) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(order sorting ``score`` ascending, start index of each group of equal scores in it)."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.concatenate([[0], np.nonzero(np.diff(s))[0] + 1]).astype(np.intp)
    return order, starts


def _grouped(y: Array, score: Array, weights: Array) -> tuple[Array, Array]:
    """Per replicate (rows of ``weights``, ``(B, n)``) and tie group of ascending scores: the
    weight of events and of non-events, each ``(B, G)``."""
    order, starts = _tie_groups(score)
    w = weights[:, order]
    yo = y[order]
    pos = np.add.reduceat(w * yo[None, :], starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - yo)[None, :], starts, axis=1)
    return pos, neg


def auc_many(y: Array, score: Array, weights: Array) -> Array:
    """``(B,)`` AUC of ``score`` under each row of ``weights`` (``(B, n)`` non-negative):
    the weighted Mann-Whitney statistic, ties one half; NaN where a row has no event or no
    non-event."""
    pos, neg = _grouped(y, score, weights)
    below = np.cumsum(neg, axis=1) - neg
    total_pos = pos.sum(axis=1)
    total_neg = neg.sum(axis=1)
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / (total_pos * total_neg)
    out[(total_pos <= 0) | (total_neg <= 0)] = np.nan
    return np.asarray(out, dtype=np.float64)


def ap_many(y: Array, score: Array, weights: Array) -> Array:
    """``(B,)`` average precision of ``score`` under each row of ``weights`` (as
    scikit-learn's ``average_precision_score``: a step per distinct score); NaN where a row
    has no event."""
    pos, neg = _grouped(y, score, weights)
    pos, neg = pos[:, ::-1], neg[:, ::-1]  # thresholds from the highest score down
    tp = np.cumsum(pos, axis=1)
    fp = np.cumsum(neg, axis=1)
    total_pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        out = np.sum(pos * precision, axis=1) / total_pos
    out[total_pos <= 0] = np.nan
    return np.asarray(out, dtype=np.float64)


def roc_auc(y: Array, score: Array, weight: Array | None = None) -> float:
    """AUC of ``score`` for the 0/1 outcomes ``y`` (``(n,)`` each; optional ``(n,)``
    non-negative weights); NaN when only one class is present."""
    y_arr, s_arr = _check(y, score)
    w = np.ones((1, y_arr.size)) if weight is None else np.asarray(weight, dtype=np.float64)[None]
    return float(auc_many(y_arr, s_arr, w)[0])


def average_precision(y: Array, score: Array, weight: Array | None = None) -> float:
    """Average precision of ``score`` for the 0/1 outcomes ``y``; NaN without an event."""
    y_arr, s_arr = _check(y, score)
    w = np.ones((1, y_arr.size)) if weight is None else np.asarray(weight, dtype=np.float64)[None]
    return float(ap_many(y_arr, s_arr, w)[0])


Many = Callable[[Array, Array, Array], Array]
_MANY: dict[str, Many] = {"auc": auc_many, "ap": ap_many}


METRICS: dict[str, Metric] = {"auc": roc_auc, "ap": average_precision}
"""The bootstrapped discrimination metrics by name."""


def subject_bootstrap_weights(
    groups: Any, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> npt.NDArray[np.float64]:
    """``(n_boot, n)`` weights of a cluster bootstrap: row b holds, for each of the ``n``
    observations, how often its group (subject) was drawn in replicate b (subjects drawn
    with replacement, as many as there are)."""
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.size == 0:
        raise InputError("give one subject per knee (a non-empty 1-D array)")
    _, codes = np.unique(labels, return_inverse=True)
    n_groups = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_groups), draws.ravel()), 1.0)
    return counts[:, codes]


@dataclass(frozen=True)
class Interval:
    """A statistic with its percentile-bootstrap 95 % CI.

    Attributes:
        value: on the full sample. low, high: 2.5 and 97.5 percentiles of the replicates.
        replicates: usable replicates (those with both classes).
    """

    value: float
    low: float
    high: float
    replicates: int

    def to_json(self) -> dict[str, float | int]:
        return {
            "value": self.value,
            "ci_low": self.low,
            "ci_high": self.high,
            "n_boot": self.replicates,
        }


def _interval(value: float, reps: Array) -> Interval:
    arr = np.asarray(reps, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return Interval(value, math.nan, math.nan, 0)
    low, high = np.percentile(arr, [2.5, 97.5])
    return Interval(value, float(low), float(high), int(arr.size))


def bootstrap_metric(
    y: Any,
    score: Any,
    groups: Any,
    metric: str = "auc",
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Interval:
    """``metric`` ("auc" or "ap") of ``score`` with its subject-bootstrap 95 % CI.

    Args:
        y: ``(n,)`` 0/1 outcomes. score: ``(n,)`` finite scores (higher = more likely).
        groups: ``(n,)`` subject of each knee (the resampling unit).
        n_boot: replicates. seed: the bootstrap's random seed.

    Raises:
        InputError: shapes, missing values, an unknown metric.
    """
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    y_arr, s_arr = _check(y, score)
    fn = METRICS[metric]
    weights = subject_bootstrap_weights(groups, n_boot, seed)
    if weights.shape[1] != y_arr.size:
        raise InputError("give one subject per knee")
    reps = _MANY[metric](y_arr, s_arr, weights)
    return _interval(fn(y_arr, s_arr, None), reps)


def bootstrap_difference(
    y: Any,
    score_a: Any,
    score_b: Any,
    groups: Any,
    metric: str = "auc",
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Interval:
    """``metric(score_a) - metric(score_b)`` on the same knees, with the paired
    subject-bootstrap 95 % CI (the same replicates for both scores)."""
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    y_arr, a = _check(y, score_a)
    _, b = _check(y, score_b)
    fn = METRICS[metric]
    weights = subject_bootstrap_weights(groups, n_boot, seed)
    if weights.shape[1] != y_arr.size:
        raise InputError("give one subject per knee")
    reps = _MANY[metric](y_arr, a, weights) - _MANY[metric](y_arr, b, weights)
    return _interval(fn(y_arr, a, None) - fn(y_arr, b, None), reps)


@dataclass(frozen=True)
class Discrimination:
    """AUC and AP of one score with their subject-bootstrap 95 % CIs.

    Attributes:
        n: knees. events: knees with the outcome. subjects: distinct subjects.
        auc, ap: :class:`Interval`.
    """

    n: int
    events: int
    subjects: int
    auc: Interval
    ap: Interval

    @property
    def prevalence(self) -> float:
        return self.events / self.n if self.n else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "events": self.events,
            "subjects": self.subjects,
            "prevalence": self.prevalence,
            "auc": self.auc.value,
            "auc_ci": [self.auc.low, self.auc.high],
            "ap": self.ap.value,
            "ap_ci": [self.ap.low, self.ap.high],
            "n_boot": self.auc.replicates,
        }


def discrimination(
    y: Any, score: Any, groups: Any, *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> Discrimination:
    """AUC and AP of ``score`` with subject-bootstrap 95 % CIs (one set of replicates for
    both). Arguments as :func:`bootstrap_metric`."""
    y_arr, s_arr = _check(y, score)
    labels = np.asarray(groups)
    weights = subject_bootstrap_weights(labels, n_boot, seed)
    if weights.shape[1] != y_arr.size:
        raise InputError("give one subject per knee")
    auc_reps = auc_many(y_arr, s_arr, weights)
    ap_reps = ap_many(y_arr, s_arr, weights)
    return Discrimination(
        n=int(y_arr.size),
        events=int(y_arr.sum()),
        subjects=int(np.unique(labels).size),
        auc=_interval(roc_auc(y_arr, s_arr), auc_reps),
        ap=_interval(average_precision(y_arr, s_arr), ap_reps),
    )


def calibration_bins(
    probability: Any,
    y: Any,
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "quantile",
) -> list[dict[str, float | int]]:
    """Calibration bins of predicted probabilities against 0/1 outcomes.

    Args:
        probability: ``(n,)`` predicted probabilities in [0, 1].
        y: ``(n,)`` 0/1 outcomes.
        n_bins: bins (>= 1).
        strategy: ``uniform`` equal-width bins over [0, 1] (``(lo, hi]``, the first holds 0
            too); ``quantile`` equal-count bins at the probabilities' quantiles (ties may
            merge bins).

    Returns:
        one dict per non-empty bin: ``lower``, ``upper``, ``count``, ``mean_probability``,
        ``observed`` (share of events).

    Raises:
        InputError: shapes, probabilities outside [0, 1], ``n_bins`` < 1.
    """
    y_arr, p = _check(y, probability, "probabilitie")
    if np.any((p < 0) | (p > 1)):
        raise InputError("probabilities must lie in [0, 1]")
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1, found {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
    else:
        raise InputError(f"unknown strategy {strategy!r}; expected uniform or quantile")
    which = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, edges.size - 2)
    rows: list[dict[str, float | int]] = []
    for b in range(edges.size - 1):
        inside = which == b
        n = int(inside.sum())
        if n == 0:
            continue
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": n,
                "mean_probability": float(p[inside].mean()),
                "observed": float(y_arr[inside].mean()),
            }
        )
    return rows


def expected_calibration_error(bins: list[dict[str, float | int]]) -> float:
    """ECE of :func:`calibration_bins`: count-weighted mean ``|mean p - observed|``."""
    total = sum(int(b["count"]) for b in bins)
    if total == 0:
        return math.nan
    return float(
        sum(
            int(b["count"]) * abs(float(b["mean_probability"]) - float(b["observed"])) for b in bins
        )
        / total
    )


def brier_score(probability: Any, y: Any) -> float:
    """Mean squared difference between predicted probabilities and 0/1 outcomes."""
    y_arr, p = _check(y, probability, "probabilitie")
    return float(np.mean((p - y_arr) ** 2))


def concordance(time: Any, risk: Any, event: Any) -> float:
    """Harrell's C-index of a risk score (higher = earlier event) with right-censored data.

    Args:
        time: ``(n,)`` time to event or censoring (> 0, any unit).
        risk: ``(n,)`` finite risk scores.
        event: ``(n,)`` 1 event observed at ``time``, 0 censored then.

    Returns:
        the C-index; NaN when no pair is comparable.
    """
    from lifelines.utils import concordance_index  # type: ignore[import-untyped]

    t = np.asarray(time, dtype=np.float64)
    r = np.asarray(risk, dtype=np.float64)
    e = np.asarray(event, dtype=np.float64)
    if not (t.shape == r.shape == e.shape and t.ndim == 1):
        raise InputError("times, risks and events must be 1-D arrays of one length")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r))):
        raise InputError("times and risks must be finite")
    if e.sum() == 0:
        return math.nan
    try:
        return float(concordance_index(t, -r, e))
    except ZeroDivisionError:
        return math.nan
