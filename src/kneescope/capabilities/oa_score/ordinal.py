"""A regularised proportional-odds (cumulative-logit) model of an ordinal grade.

For a knee with standardised features ``z`` (``(p,)``), the linear predictor (the score's
logit form) is ``eta = z . beta``, and for the ordered grades ``c_0 < c_1 < ... < c_{K-1}``
seen in training::

    P(grade >= c_k | z) = sigmoid(eta - theta_k),   k = 1 .. K-1,   theta_1 < ... < theta_{K-1}

Fitted by maximum likelihood with an L2 penalty ``(1 / (2 C)) * |beta|^2`` on the
coefficients (not the thresholds), by L-BFGS with the exact gradient. The thresholds are
parameterised as ``theta_1 = a_1``, ``theta_k = theta_{k-1} + exp(a_k)`` so they stay ordered.

The score on the grade scale is the expected grade
``E[grade | z] = c_0 + sum_k (c_k - c_{k-1}) P(grade >= c_k | z)``: a strictly increasing
function of ``eta``, in grade units (0 .. 4 for KL grades 0 .. 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError

Array = npt.NDArray[np.float64]

_TINY = 1e-300


def _sigmoid(x: Array) -> Array:
    from scipy.special import expit

    return np.asarray(expit(x), dtype=np.float64)


@dataclass(frozen=True)
class OrdinalFit:
    """A fitted cumulative-logit model.

    Attributes:
        coef: ``(p,)`` coefficients per standard deviation of each feature.
        thresholds: ``(K-1,)`` increasing thresholds ``theta_k``.
        classes: ``(K,)`` the ordered grades seen in training.
        converged: the optimiser reported convergence.
        iterations: optimiser iterations.
    """

    coef: Array
    thresholds: Array
    classes: Array
    converged: bool
    iterations: int

    def linear(self, z: Array) -> Array:
        """``(n,)`` linear predictor of ``(n, p)`` standardised features."""
        return np.asarray(z @ self.coef, dtype=np.float64)

    def cumulative(self, eta: Array) -> Array:
        """``(n, K-1)`` probabilities ``P(grade >= c_k)``, k = 1 .. K-1."""
        return _sigmoid(eta[:, None] - self.thresholds[None, :])

    def expected_grade(self, eta: Array) -> Array:
        """``(n,)`` expected grade (grade units)."""
        steps = np.diff(self.classes)
        return np.asarray(self.classes[0] + self.cumulative(eta) @ steps, dtype=np.float64)

    def probability_at_least(self, eta: Array, grade: float) -> Array:
        """``(n,)`` ``P(grade >= grade)``; ``grade`` must lie above the lowest class and at
        most the highest (else the probability is 1 or 0 by construction).

        Raises:
            InputError: ``grade`` outside ``(c_0, c_{K-1}]``.
        """
        above = np.nonzero(self.classes >= grade)[0]
        if grade <= self.classes[0] or above.size == 0:
            raise InputError(
                f"P(grade >= {grade:g}) needs training grades on both sides of {grade:g}; "
                f"seen: {', '.join(f'{c:g}' for c in self.classes)}"
            )
        k = int(above[0])  # the first class >= grade; its threshold index is k - 1
        return _sigmoid(eta - self.thresholds[k - 1])


def _thresholds(a: Array) -> Array:
    out = np.empty_like(a)
    out[0] = a[0]
    if a.size > 1:
        out[1:] = a[0] + np.cumsum(np.exp(a[1:]))
    return out


def _objective(
    params: Array, z: Array, y: npt.NDArray[np.int64], n_thresholds: int, penalty: Array | float
) -> tuple[float, Array]:
    """Penalised negative log-likelihood and its gradient; ``y`` holds class indices,
    ``penalty`` the L2 weight of each coefficient (or one for all)."""
    p = z.shape[1]
    beta = params[:p]
    a = params[p:]
    theta = _thresholds(a)
    eta = z @ beta
    n = z.shape[0]
    # F[:, j] = P(Y >= j) for j = 0 .. K: F[:, 0] = 1, F[:, K] = 0
    F = np.ones((n, n_thresholds + 2))
    F[:, 1:-1] = _sigmoid(eta[:, None] - theta[None, :])
    F[:, -1] = 0.0
    rows = np.arange(n)
    upper = F[rows, y]
    lower = F[rows, y + 1]
    prob = np.maximum(upper - lower, _TINY)
    nll = -float(np.log(prob).sum()) + 0.5 * float(beta @ (penalty * beta))
    dF = F * (1.0 - F)  # dF_j / d eta; dF_j / d theta_j = -dF_j
    d_upper = dF[rows, y]
    d_lower = dF[rows, y + 1]
    d_eta = -(d_upper - d_lower) / prob
    grad_beta = z.T @ d_eta + penalty * beta
    # d prob / d theta_y = -dF_y (for 1 <= y <= K-1), d prob / d theta_{y+1} = +dF_{y+1}
    has_upper = (y >= 1) & (y <= n_thresholds)
    has_lower = y + 1 <= n_thresholds
    grad_theta = np.bincount(
        y[has_upper] - 1, weights=d_upper[has_upper] / prob[has_upper], minlength=n_thresholds
    ) - np.bincount(
        y[has_lower], weights=d_lower[has_lower] / prob[has_lower], minlength=n_thresholds
    )
    # theta_k = a_1 + sum_{m=2..k} exp(a_m)
    suffix = np.cumsum(grad_theta[::-1])[::-1]
    grad_a = suffix.copy()
    grad_a[1:] *= np.exp(a[1:])
    return nll, np.concatenate([grad_beta, grad_a])


def fit_ordinal(z: Array, grades: Array, *, c: float = 1.0, max_iter: int = 500) -> OrdinalFit:
    """Fit the cumulative-logit model to standardised features and grades.

    Args:
        z: ``(n, p)`` standardised features, finite.
        grades: ``(n,)`` grades (numbers; at least two distinct).
        c: inverse L2 strength (larger: weaker penalty), > 0.
        max_iter: L-BFGS iterations at most.

    Raises:
        InputError: shapes that do not match, non-finite values, fewer than two grades.
    """
    from scipy.optimize import minimize

    z = np.asarray(z, dtype=np.float64)
    grades = np.asarray(grades, dtype=np.float64)
    if z.ndim != 2 or grades.shape != (z.shape[0],):
        raise InputError(f"features {z.shape} and grades {grades.shape} do not match")
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(grades))):
        raise InputError("features and grades must be finite (impute missing values first)")
    if not c > 0:
        raise InputError(f"the inverse regularisation strength must be > 0, found {c}")
    classes, inverse = np.unique(grades, return_inverse=True)
    y = inverse.astype(np.int64)
    if classes.size < 2:
        raise InputError(
            f"every knee has grade {classes[0]:g} (or there are none); a score needs knees "
            "of at least two grades"
        )
    k1 = classes.size - 1
    # start: thresholds at the logits of the cumulative class shares, coefficients 0
    share = np.cumsum(np.bincount(y, minlength=classes.size))[:-1] / y.size
    theta0 = np.log(share / (1.0 - share))  # at eta = 0: P(Y >= c_k) = 1 - share below c_k
    a0 = np.empty(k1)
    a0[0] = theta0[0]
    a0[1:] = np.log(np.maximum(np.diff(theta0), 1e-3))
    x0 = np.concatenate([np.zeros(z.shape[1]), a0])
    n = float(z.shape[0])
    # fitted in whitened coordinates (beta = T gamma, T = V diag(1/sqrt(lambda)) from the
    # eigen-decomposition of z'z / n): the same optimum - |beta|^2 = sum gamma_i^2 / lambda_i,
    # a diagonal penalty - but correlated features no longer slow the optimiser down
    evals, evecs = np.linalg.eigh(z.T @ z / n)
    evals = np.maximum(evals, 1e-10 * max(float(evals.max()), 1e-300))
    T = evecs / np.sqrt(evals)[None, :]
    zw = z @ T
    penalty = (1.0 / c) / evals

    def per_knee(params: Array) -> tuple[float, Array]:
        # divided by n: the stopping tolerances then mean the same for 100 knees as for
        # 10,000 (the summed gradient grows with n)
        value, grad = _objective(params, zw, y, k1, penalty)
        return value / n, grad / n

    result = minimize(
        per_knee,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-7},
    )
    p = z.shape[1]
    return OrdinalFit(
        coef=np.asarray(T @ result.x[:p], dtype=np.float64),
        thresholds=_thresholds(np.asarray(result.x[p:], dtype=np.float64)),
        classes=classes.astype(np.float64),
        converged=bool(result.success),
        iterations=int(result.nit),
    )
