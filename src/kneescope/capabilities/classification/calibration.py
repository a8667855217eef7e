"""Calibrated class probabilities: temperature scaling, expected calibration error, reliability.

A classifier's softmax probabilities are calibrated when, among the cases given probability
``p`` for their predicted class, a fraction ``p`` is right. Temperature scaling (Guo et al.
2017) divides the logits by one number ``T > 0`` fitted on a validation split (``T > 1``
softens over-confident probabilities, ``T < 1`` sharpens); the predicted class does not change.

Definitions used throughout (``probs`` ``(N, K)``, ``labels`` ``(N,)``):

* confidence of a case: its largest probability ``max_k probs[n, k]``; the prediction is its
  arg-max; the case is correct when the prediction equals the label.
* bins: ``n_bins`` equal-width confidence intervals over ``[0, 1]``, ``(lo, hi]`` (the first
  also holds 0).
* expected calibration error (ECE): ``sum_b (n_b / N) * |accuracy_b - confidence_b|`` over the
  non-empty bins, ``accuracy_b`` and ``confidence_b`` the bin's fraction correct and mean
  confidence (top-label ECE, as Guo et al.; 0 = calibrated, at most 1).

Inputs may be numpy arrays or torch tensors; results are numpy / Python floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError
from kneescope.io.atomic import atomic_write

T_MIN = 0.05
"""Smallest temperature :func:`fit_temperature` returns (a validation set the network
separates perfectly drives the fitted temperature towards 0; it stops here)."""
T_MAX = 20.0
"""Largest temperature :func:`fit_temperature` returns (logits that carry no information drive
it towards infinity; it stops here)."""


def _array(values: Any, name: str) -> npt.NDArray[Any]:
    """``values`` (numpy array, torch tensor or sequence) as a numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not an array ({exc}); pass a numpy array") from None


def _check_labels(labels: Any, n: int, k: int) -> npt.NDArray[np.int64]:
    y = _array(labels, "labels")
    if y.shape != (n,):
        raise InputError(
            f"labels must be ({n},), one class index per row, found shape {y.shape}; "
            "pass one label per case"
        )
    if y.dtype.kind not in "iu" and not (
        y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        raise InputError(f"labels must be integer class indices, found {y.dtype}; cast them")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= k):
        raise InputError(
            f"labels must lie in 0..{k - 1} for {k} classes, found {y.min()}..{y.max()}; "
            "check the class order"
        )
    return y


def _check_logits(logits: Any) -> npt.NDArray[np.float64]:
    z = _array(logits, "logits").astype(np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 2:
        raise InputError(
            f"logits must be (N, K) with N >= 1 cases and K >= 2 classes, found {z.shape}; "
            "pass the network's raw outputs for a batch"
        )
    if not np.all(np.isfinite(z)):
        raise InputError("logits contain NaN or infinity; the network's outputs are broken")
    return z


def _check_probs(probs: Any) -> npt.NDArray[np.float64]:
    p = _array(probs, "probs").astype(np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise InputError(
            f"probs must be (N, K) with N >= 1 cases and K >= 2 classes, found {p.shape}; "
            "pass one row of class probabilities per case"
        )
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise InputError("probs must be finite and in [0, 1]; pass softmax outputs, not logits")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise InputError("each row of probs must sum to 1; pass softmax outputs, not logits")
    return p


def softmax(logits: Any) -> npt.NDArray[np.float64]:
    """Row-wise softmax of ``(N, K)`` logits (float64, numerically stable)."""
    z = _check_logits(logits)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


def apply_temperature(logits: Any, temperature: float) -> npt.NDArray[np.float64]:
    """Calibrated probabilities ``softmax(logits / temperature)``, ``(N, K)`` float64."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature must be a positive number, found {temperature}")
    return softmax(_check_logits(logits) / temperature)


def negative_log_likelihood(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean ``-log softmax(logits / temperature)[label]`` (nats per case)."""
    z = _check_logits(logits) / temperature
    y = _check_labels(labels, z.shape[0], z.shape[1])
    return _nll(z, y)


def _nll(z: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> float:
    top = z.max(axis=1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature ``T`` that minimises the mean negative log-likelihood of ``labels``
    under ``softmax(logits / T)``: fit it on a validation split, never on the training data.

    Args:
        logits: ``(N, K)`` raw network outputs (float; numpy or torch).
        labels: ``(N,)`` true class indices in ``0 .. K - 1``.

    Returns:
        ``T`` in ``[T_MIN, T_MAX]`` (1 leaves the probabilities unchanged).

    The NLL is convex in ``1 / T`` (a log-sum-exp of linear functions minus a linear one), so
    it has one minimum along ``log T``: a bounded Brent search on ``log T`` finds it to
    ``1e-6``. When the minimum lies beyond ``[T_MIN, T_MAX]`` (a perfectly separated set, or
    logits that carry no information), the nearer bound is returned.

    Raises:
        InputError: shapes that do not match, non-finite logits, labels out of range.
    """
    from scipy.optimize import minimize_scalar

    z = _check_logits(logits)
    y = _check_labels(labels, z.shape[0], z.shape[1])
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    result = minimize_scalar(
        lambda u: _nll(z / math.exp(u), y),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-6},
    )
    best = float(result.x)
    # Brent never evaluates the bounds themselves: compare with them explicitly
    candidates = [
        (lo, _nll(z / T_MIN, y)),
        (best, _nll(z / math.exp(best), y)),
        (hi, _nll(z / T_MAX, y)),
    ]
    u = min(candidates, key=lambda c: c[1])[0]
    return float(min(max(math.exp(u), T_MIN), T_MAX))


@dataclass(frozen=True)
class ReliabilityTable:
    """Calibration per confidence bin (``n_bins`` equal-width bins over ``[0, 1]``).

    Attributes:
        lower: ``(n_bins,)`` lower edge of each bin (exclusive, except 0 for the first).
        upper: ``(n_bins,)`` upper edge (inclusive).
        count: ``(n_bins,)`` int64 number of cases whose confidence falls in the bin.
        confidence: ``(n_bins,)`` mean confidence of those cases (NaN for an empty bin).
        accuracy: ``(n_bins,)`` fraction of them predicted correctly (NaN for an empty bin).
    """

    lower: npt.NDArray[np.float64]
    upper: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]
    accuracy: npt.NDArray[np.float64]

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean |accuracy - confidence|."""
        full = self.count > 0
        gaps = np.abs(self.accuracy[full] - self.confidence[full])
        return float((self.count[full] * gaps).sum() / self.count.sum())

    def rows(self) -> list[dict[str, float | int]]:
        """One dict per bin (``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``),
        for a CSV table (NaN for an empty bin's means)."""
        return [
            {
                "lower": float(lo),
                "upper": float(hi),
                "count": int(n),
                "confidence": float(c),
                "accuracy": float(a),
            }
            for lo, hi, n, c, a in zip(
                self.lower, self.upper, self.count, self.confidence, self.accuracy, strict=True
            )
        ]


def reliability_table(probs: Any, labels: Any, n_bins: int = 15) -> ReliabilityTable:
    """Per-bin confidence and accuracy of ``(N, K)`` probabilities against ``(N,)`` labels.

    Raises:
        InputError: shapes that do not match, probabilities that are not a distribution per
            row, labels out of range, ``n_bins < 1``.
    """
    if n_bins < 1:
        raise InputError(f"n_bins must be at least 1, found {n_bins}")
    p = _check_probs(probs)
    y = _check_labels(labels, p.shape[0], p.shape[1])
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 goes to the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=n_bins) / count
    empty = count == 0
    mean_conf[empty] = np.nan
    accuracy[empty] = np.nan
    return ReliabilityTable(
        lower=edges[:-1].copy(),
        upper=edges[1:].copy(),
        count=count,
        confidence=mean_conf,
        accuracy=accuracy,
    )


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error of ``(N, K)`` probabilities (0 .. 1; see the
    module docstring for the binning)."""
    return reliability_table(probs, labels, n_bins).ece


def save_reliability_diagram(
    probs: Any,
    labels: Any,
    path: str | Path,
    *,
    n_bins: int = 15,
    title: str | None = None,
) -> Path:
    """Write a reliability diagram of ``probs`` against ``labels`` as a PNG at ``path``.

    Top panel: the fraction correct per confidence bin (bars) against the diagonal of a
    calibrated model, the gap to the diagonal shaded, the ECE in the title. Bottom panel:
    the number of cases per bin. The file is written atomically (a reader never sees half a
    PNG; on failure an older file is left as it was). Returns the path.

    Raises:
        InputError: as :func:`reliability_table`; the folder of ``path`` does not exist.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = reliability_table(probs, labels, n_bins)
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"folder {path.parent} does not exist; create it first")
    fig = Figure(figsize=(4.5, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    width = 1.0 / n_bins
    full = table.count > 0
    top.bar(
        table.lower[full],
        table.accuracy[full],
        width=width,
        align="edge",
        color="#4c72b0",
        edgecolor="black",
        linewidth=0.5,
        label="fraction correct",
    )
    gap_low = np.minimum(table.accuracy[full], table.confidence[full])
    top.bar(
        table.lower[full],
        np.abs(table.accuracy[full] - table.confidence[full]),
        bottom=gap_low,
        width=width,
        align="edge",
        color="#dd8452",
        alpha=0.5,
        edgecolor="#dd8452",
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("fraction correct")
    top.legend(loc="upper left", fontsize=8)
    n = int(table.count.sum())
    heading = f"ECE {table.ece:.3f} ({n} cases, {n_bins} bins)"
    top.set_title(heading if title is None else f"{title}\n{heading}", fontsize=10)
    bottom.bar(table.lower, table.count, width=width, align="edge", color="grey")
    bottom.set_xlabel("confidence (largest class probability)")
    bottom.set_ylabel("cases")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path
