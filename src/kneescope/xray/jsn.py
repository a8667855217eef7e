"""OARSI joint-space-narrowing (JSN) grade per compartment from the measured mJSW.

The rule: grade = the number of thresholds the compartment's mJSW (mm) lies below, with
three decreasing thresholds per compartment (grade 0 above the first, 3 below the third).
The thresholds are fitted on a training set of synthetic films (:func:`fit_thresholds`:
the cut points that maximise accuracy, exactly, by dynamic programming over the sorted
measurements) and reported on a separate held-out set by ``benchmarks/xray_jsw.py``;
:data:`JSN_THRESHOLDS_MM` holds the shipped values and the command that fitted them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kneescope.core.agreement import quadratic_kappa
from kneescope.errors import InputError

N_GRADES = 4
"""OARSI JSN grades 0..3."""


@dataclass(frozen=True)
class JsnThresholds:
    """Three decreasing mJSW thresholds (mm) per compartment: grade >= g when mJSW < t[g-1]."""

    medial_mm: tuple[float, float, float]
    lateral_mm: tuple[float, float, float]

    def for_compartment(self, compartment: str) -> tuple[float, float, float]:
        """The thresholds of ``"medial"`` or ``"lateral"``."""
        if compartment == "medial":
            return self.medial_mm
        if compartment == "lateral":
            return self.lateral_mm
        raise InputError(f"unknown compartment {compartment!r}; use 'medial' or 'lateral'")


JSN_THRESHOLDS_MM = JsnThresholds(
    medial_mm=(4.02, 2.96, 2.05),
    lateral_mm=(4.72, 2.95, 1.65),
)
"""Shipped thresholds (mm, rounded to 0.01): fitted by ``benchmarks/xray_jsw.py`` on its
training films (30 synthetic films, seed 151, 59 knees, KL uniform 0..4); scored there on
the 100 held-out knees (seed 152)."""


def jsn_grade(mjsw_mm: float, thresholds: tuple[float, float, float]) -> int | None:
    """OARSI JSN grade 0..3 of one compartment from its mJSW (mm); None when not measured."""
    if not math.isfinite(mjsw_mm):
        return None
    return int(sum(mjsw_mm < t for t in thresholds))


def jsn_grades(
    mjsw_mm: npt.ArrayLike, thresholds: tuple[float, float, float]
) -> npt.NDArray[np.int64]:
    """Vectorised :func:`jsn_grade`: int64 array, -1 where mJSW is NaN."""
    values = np.asarray(mjsw_mm, dtype=np.float64)
    grades = np.zeros(values.shape, dtype=np.int64)
    for t in thresholds:
        grades += values < t
    grades[~np.isfinite(values)] = -1
    return grades


def fit_thresholds(mjsw_mm: npt.ArrayLike, grades: npt.ArrayLike) -> tuple[float, float, float]:
    """The three decreasing thresholds (mm) that maximise the accuracy of :func:`jsn_grade`
    on a training set (exact, dynamic programming over the sorted mJSW values).

    Args:
        mjsw_mm: measured mJSW per knee (mm); NaN entries are left out.
        grades: true JSN grade 0..3 per knee.

    Returns:
        (t1, t2, t3), t1 >= t2 >= t3, each halfway between two neighbouring measurements
        (or 0.5 mm beyond the range when a grade is absent from one end).

    Raises:
        InputError: lengths differ, a grade outside 0..3, or fewer than 4 measured knees.
    """
    x = np.asarray(mjsw_mm, dtype=np.float64).ravel()
    y = np.asarray(grades).ravel()
    if x.shape != y.shape:
        raise InputError(f"{x.size} mJSW values for {y.size} grades; pass one grade per knee")
    ok = np.isfinite(x)
    x, y = x[ok], y[ok].astype(np.int64)
    if x.size < N_GRADES:
        raise InputError(f"only {x.size} measured knees; fit the JSN thresholds on more")
    if y.min() < 0 or y.max() >= N_GRADES:
        raise InputError("JSN grades must be 0..3")
    # grade 3 = smallest mJSW: sort ascending by mJSW, assign 3, 2, 1, 0 from the left
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    n = xs.size
    # possible cut positions: between distinct neighbouring values, and both ends
    cuts = [0] + [i for i in range(1, n) if xs[i] > xs[i - 1]] + [n]
    # counts[g][k] = number of knees of grade g among the first k sorted knees
    counts = np.zeros((N_GRADES, n + 1), dtype=np.int64)
    for g in range(N_GRADES):
        counts[g, 1:] = np.cumsum(ys == g)
    m = len(cuts)
    cut_idx = np.asarray(cuts)
    # best[s][j]: best correct count of the segments 0..s (grades 3, 2, ...) ending at cut j
    best = np.full((N_GRADES, m), -1, dtype=np.int64)
    arg = np.zeros((N_GRADES, m), dtype=np.int64)
    grade0 = N_GRADES - 1
    best[0] = counts[grade0, cut_idx]
    for s in range(1, N_GRADES):
        g = N_GRADES - 1 - s
        cg = counts[g, cut_idx]
        # best[s][j] = max_{i <= j} best[s-1][i] + cg[j] - cg[i]
        run = best[s - 1] - cg
        acc = np.maximum.accumulate(run)
        pos = np.zeros(m, dtype=np.int64)
        current = 0
        for j in range(m):
            if run[j] >= run[current]:
                current = j
            pos[j] = current
        best[s] = acc + cg
        arg[s] = pos
    # the last segment (grade 0) must end at n (the last cut)
    j = m - 1
    ends = [j]
    for s in range(N_GRADES - 1, 0, -1):
        j = int(arg[s, j])
        ends.append(j)
    # ends: [end of grade 0, end of grade 1, end of grade 2, end of grade 3]
    bounds = [int(cut_idx[e]) for e in ends[1:]]  # ends of grades 1, 2, 3 (sorted indices)

    def threshold(k: int) -> float:
        if k <= 0:
            return float(xs[0] - 0.5)
        if k >= n:
            return float(xs[-1] + 0.5)
        return float(0.5 * (xs[k - 1] + xs[k]))

    t1, t2, t3 = (threshold(k) for k in bounds)
    return t1, t2, t3


__all__ = [
    "JSN_THRESHOLDS_MM",
    "N_GRADES",
    "JsnThresholds",
    "fit_thresholds",
    "jsn_grade",
    "jsn_grades",
    "quadratic_kappa",
]
