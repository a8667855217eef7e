"""Random-intercept regression of a score on knee-level predictors, both knees and every visit
of a subject sharing one intercept.

Two fits of the same model ``y_ij = x_ij' beta + b_i + e_ij``, ``b_i ~ N(0, tau^2)``,
``e_ij ~ N(0, sigma^2)``:

* :func:`fit_linear_mixed`: the usual linear mixed model (statsmodels ``MixedLM``, REML),
  what an epidemiologist fits first. It takes the recorded score as the outcome, so a score
  clipped at its floor or ceiling and rounded to whole points biases it (towards zero for
  slopes where many values sit at the floor).
* :func:`fit_censored_mixed`: the same model by maximum likelihood with each recorded value
  read as the interval it stands for: an integer score ``k`` inside the range means the
  latent value lies in ``[k - 0.5, k + 0.5)``, the floor ``0`` means ``(-inf, 0.5)``, the
  ceiling ``20`` means ``[19.5, inf)`` (a Tobit model with rounding). The random intercept
  is integrated out by Gauss-Hermite quadrature; the predictors are centred and scaled inside
  (a well-conditioned optimum) and the coefficients mapped back; standard errors come from
  the observed information (the numerically differentiated analytic gradient).

Arrays in, numbers out: no files, no tables beyond pandas for statsmodels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

from kneescope.errors import InputError

Z95 = float(stats.norm.ppf(0.975))
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class RandomInterceptFit:
    """A fitted random-intercept model.

    Attributes:
        method: ``"mixedlm-reml"`` or ``"censored-ml"``.
        names: predictor names, ``"Intercept"`` first.
        coef: ``(p,)`` float64 fixed effects (outcome units per predictor unit).
        se: ``(p,)`` standard errors.
        ci_low, ci_high: ``(p,)`` Wald 95 % limits.
        p_value: ``(p,)`` two-sided Wald p-values.
        sigma: residual SD (outcome units); tau: random-intercept SD (outcome units).
        n_obs, n_groups: observations and subjects used.
        converged: the optimiser's verdict.
        log_likelihood: at the estimate (REML for ``mixedlm-reml``).
        notes: warnings in words (non-convergence, a boundary variance).
    """

    method: str
    names: tuple[str, ...]
    coef: NDArray[np.float64]
    se: NDArray[np.float64]
    ci_low: NDArray[np.float64]
    ci_high: NDArray[np.float64]
    p_value: NDArray[np.float64]
    sigma: float
    tau: float
    n_obs: int
    n_groups: int
    converged: bool
    log_likelihood: float
    notes: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict[str, Any]]:
        """One dict per coefficient: method, term, estimate, se, ci_low, ci_high, p_value."""
        return [
            {
                "method": self.method,
                "term": name,
                "estimate": float(self.coef[i]),
                "se": float(self.se[i]),
                "ci_low": float(self.ci_low[i]),
                "ci_high": float(self.ci_high[i]),
                "p_value": float(self.p_value[i]),
            }
            for i, name in enumerate(self.names)
        ]

    def coefficient(self, name: str) -> tuple[float, float, float]:
        """``(estimate, ci_low, ci_high)`` of predictor ``name``.

        Raises:
            InputError: no such predictor.
        """
        if name not in self.names:
            raise InputError(f"no coefficient {name!r}; the model has {', '.join(self.names)}")
        i = self.names.index(name)
        return float(self.coef[i]), float(self.ci_low[i]), float(self.ci_high[i])


def _check(
    y: ArrayLike, x: ArrayLike, groups: ArrayLike, names: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], tuple[str, ...]]:
    """Validated ``(y (n,), X (n, p) with an intercept column first, group codes (n,), names)``."""
    yy = np.asarray(y, dtype=np.float64)
    xx = np.asarray(x, dtype=np.float64)
    if xx.ndim == 1:
        xx = xx[:, None]
    gg = np.asarray(groups)
    if yy.ndim != 1 or xx.shape[0] != yy.shape[0] or gg.shape != yy.shape:
        raise InputError(
            f"y {yy.shape}, X {xx.shape} and groups {gg.shape} must have one row per observation"
        )
    if xx.shape[1] != len(names):
        raise InputError(f"{xx.shape[1]} predictor columns but {len(names)} names")
    if not (np.isfinite(yy).all() and np.isfinite(xx).all()):
        raise InputError("the outcome and predictors must be finite; drop incomplete rows first")
    _, codes = np.unique(gg, return_inverse=True)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    p = xx.shape[1] + 1
    if len(yy) < p + 2 or n_groups < 3:
        raise InputError(
            f"{len(yy)} observations of {n_groups} subjects are too few for {p} coefficients; "
            "give more knees"
        )
    constant = [names[j] for j in range(xx.shape[1]) if np.ptp(xx[:, j]) == 0]
    if constant:
        raise InputError(f"predictor(s) {constant} do not vary; leave them out")
    design = np.column_stack([np.ones(len(yy)), xx])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise InputError(
            f"predictors {list(names)} are collinear (one is a combination of the others); "
            "leave one out"
        )
    return yy, design, codes.astype(np.int64), ("Intercept", *names)


def _wald(
    coef: NDArray[np.float64], se: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = coef / se
    p = 2.0 * stats.norm.sf(np.abs(z))
    return coef - Z95 * se, coef + Z95 * se, p


def fit_linear_mixed(
    y: ArrayLike, x: ArrayLike, groups: ArrayLike, names: Sequence[str]
) -> RandomInterceptFit:
    """Linear mixed model with a random intercept per group (statsmodels ``MixedLM``, REML).

    Args:
        y: ``(n,)`` outcome (e.g. WOMAC pain points).
        x: ``(n, p)`` predictors (no intercept column: one is added).
        groups: ``(n,)`` subject labels (any hashable values).
        names: ``p`` predictor names.

    Raises:
        InputError: mismatched shapes, non-finite values, too few subjects, a constant or
            collinear predictor.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM  # type: ignore[import-untyped]
    from statsmodels.tools.sm_exceptions import ConvergenceWarning  # type: ignore[import-untyped]

    yy, design, codes, full = _check(y, x, groups, names)
    notes: list[str] = []
    # fitted on centred predictors (well conditioned), the intercept mapped back after
    means = design[:, 1:].mean(axis=0)
    centred = design.copy()
    centred[:, 1:] -= means
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MixedLM(yy, centred, groups=codes)
        result = model.fit(reml=True)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            notes.append(str(w.message).splitlines()[0])
    p = design.shape[1]
    back = np.eye(p)
    back[0, 1:] = -means  # intercept at x = 0 is b0 - means . beta
    coef = back @ np.asarray(result.fe_params, dtype=np.float64)
    cov = back @ np.asarray(result.cov_params())[:p, :p] @ back.T
    se = np.sqrt(np.diag(cov))
    low, high, p_value = _wald(coef, se)
    tau = float(np.sqrt(max(float(np.asarray(result.cov_re)[0, 0]), 0.0)))
    return RandomInterceptFit(
        method="mixedlm-reml",
        names=full,
        coef=coef,
        se=se,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        sigma=float(np.sqrt(result.scale)),
        tau=tau,
        n_obs=len(yy),
        n_groups=int(codes.max()) + 1,
        converged=bool(result.converged),
        log_likelihood=float(result.llf),
        notes=tuple(dict.fromkeys(notes)),
    )


def score_intervals(
    y: ArrayLike, low: float, high: float, step: float = 1.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The latent intervals a rounded, clipped score stands for.

    A value ``k`` strictly inside ``(low, high)`` stands for ``[k - step/2, k + step/2)``;
    ``low`` for ``(-inf, low + step/2)``; ``high`` for ``[high - step/2, inf)``.

    Args:
        y: ``(n,)`` recorded scores (multiples of ``step`` in ``[low, high]``).
        low, high: the score's floor and ceiling (WOMAC pain: 0, 20).
        step: the rounding unit (1 point).

    Returns:
        ``(lower, upper)``, each ``(n,)`` float64 (``-inf``/``inf`` at the limits).

    Raises:
        InputError: a value outside ``[low, high]`` or not a multiple of ``step``.
    """
    yy = np.asarray(y, dtype=np.float64)
    if not (high > low and step > 0):
        raise InputError(f"score range [{low}, {high}] with step {step} is empty")
    if np.any(yy < low) or np.any(yy > high):
        raise InputError(f"scores must lie in [{low}, {high}]; found {yy.min()}..{yy.max()}")
    off = (yy - low) / step
    if np.any(np.abs(off - np.round(off)) > 1e-6):
        raise InputError(
            f"scores must be multiples of {step} from {low} (rounded values) for the censored "
            "model; fit fractional scores (e.g. a prorated WOMAC) with the linear model "
            '(method = "linear")'
        )
    lower = np.where(yy <= low, -np.inf, yy - step / 2.0)
    upper = np.where(yy >= high, np.inf, yy + step / 2.0)
    return lower, upper


class _IntervalLikelihood:
    """Negative log-likelihood and gradient of the interval-censored random-intercept model
    in ``theta = (beta (p,), log sigma, log tau)``."""

    def __init__(
        self,
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
        design: NDArray[np.float64],
        codes: NDArray[np.int64],
        nodes: int,
    ) -> None:
        order = np.argsort(codes, kind="stable")  # rows of a subject contiguous
        self.lower = lower[order][:, None]
        self.upper = upper[order][:, None]
        self.design = design[order]
        self.codes = codes[order]
        self.starts = np.flatnonzero(np.r_[True, np.diff(self.codes) != 0])
        t, w = special.roots_hermite(nodes)
        self.t = np.sqrt(2.0) * t  # b = tau * t: standard-normal nodes
        self.log_w = np.log(w / np.sqrt(np.pi))
        self.calls = 0

    def __call__(self, theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        self.calls += 1
        p = self.design.shape[1]
        beta, sigma, tau = theta[:p], float(np.exp(theta[p])), float(np.exp(theta[p + 1]))
        eta = self.design @ beta
        b = tau * self.t  # (k,)
        centre = eta[:, None] + b[None, :]  # (n, k)
        # infinite bounds become +-40 SD: the same probabilities, densities exactly 0
        z_hi = np.minimum((self.upper - centre) / sigma, 40.0)
        z_lo = np.maximum((self.lower - centre) / sigma, -40.0)
        # P(lo < latent < hi), computed in the tail where it is accurate
        flip = z_lo > 0
        prob = special.ndtr(np.where(flip, -z_lo, z_hi)) - special.ndtr(np.where(flip, -z_hi, z_lo))
        prob = np.maximum(prob, 1e-300)
        log_p = np.log(prob)
        phi_hi = np.exp(-0.5 * z_hi * z_hi) * _INV_SQRT_2PI
        phi_lo = np.exp(-0.5 * z_lo * z_lo) * _INV_SQRT_2PI
        zphi_hi = z_hi * phi_hi
        zphi_lo = z_lo * phi_lo
        g_eta = -(phi_hi - phi_lo) / (sigma * prob)  # d log p / d centre, (n, k)
        g_logsigma = -(zphi_hi - zphi_lo) / prob  # d log p / d log sigma
        s = np.add.reduceat(log_p, self.starts, axis=0) + self.log_w[None, :]  # (g, k)
        ll_groups = special.logsumexp(s, axis=1)
        post = np.exp(s - ll_groups[:, None])  # (g, k) posterior node weights
        wpost = post[self.codes]  # (n, k)
        g_obs = (wpost * g_eta).sum(axis=1)  # (n,)
        grad_beta = self.design.T @ g_obs
        grad_logsigma = float((wpost * g_logsigma).sum())
        grad_logtau = float((wpost * g_eta * b[None, :]).sum())
        grad = np.concatenate([grad_beta, [grad_logsigma, grad_logtau]])
        return -float(ll_groups.sum()), -grad


def fit_censored_mixed(
    y: ArrayLike,
    x: ArrayLike,
    groups: ArrayLike,
    names: Sequence[str],
    *,
    low: float = 0.0,
    high: float = 20.0,
    step: float = 1.0,
    nodes: int = 48,
) -> RandomInterceptFit:
    """Random-intercept model of a rounded score clipped to ``[low, high]``, by maximum
    likelihood over the latent intervals (:func:`score_intervals`).

    Args:
        y: ``(n,)`` recorded scores (WOMAC pain 0..20 in whole points).
        x: ``(n, p)`` predictors (an intercept is added); groups: ``(n,)`` subject labels;
        names: ``p`` predictor names.
        low, high, step: the score's floor, ceiling and rounding unit.
        nodes: Gauss-Hermite nodes for the random intercept (48: coefficients within about
            1e-3 of a 160-node fit for a subject SD about the residual SD, 8 observations
            per subject; 24 nodes were off by up to 0.04 in the intercept).

    Returns:
        The fit (``method="censored-ml"``): coefficients on the latent (unclipped, unrounded)
        scale, with Wald CIs from the observed information.

    Raises:
        InputError: as :func:`fit_linear_mixed`, plus scores outside the range or not whole
            steps.
    """
    yy, design, codes, full = _check(y, x, groups, names)
    lower, upper = score_intervals(yy, low, high, step)
    # fitted on centred, scaled predictors (a well-conditioned optimum), mapped back after
    means = design[:, 1:].mean(axis=0)
    scales = design[:, 1:].std(axis=0)
    back = np.eye(design.shape[1])
    back[0, 1:] = -means / scales
    back[1:, 1:] = np.diag(1.0 / scales)
    design = np.column_stack([design[:, 0], (design[:, 1:] - means) / scales])
    nll = _IntervalLikelihood(lower, upper, design, codes, nodes)
    # start: OLS on the recorded values, half the residual variance to each component
    beta0, *_ = np.linalg.lstsq(design, yy, rcond=None)
    resid_sd = float(np.std(yy - design @ beta0)) or 1.0
    theta0 = np.concatenate([beta0, [np.log(resid_sd / np.sqrt(2)), np.log(resid_sd / np.sqrt(2))]])
    result = optimize.minimize(
        nll,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-8, "ftol": 1e-14},
    )
    theta = result.x
    hessian = _numerical_hessian(nll, theta)
    notes: list[str] = []
    try:
        cov = np.linalg.inv(hessian)
        cov = 0.5 * (cov + cov.T)
        var = np.diag(cov)
        if np.any(var <= 0):
            raise np.linalg.LinAlgError("information matrix not positive definite")
    except np.linalg.LinAlgError as exc:
        notes.append(f"standard errors unavailable: {exc}")
        var = np.full(len(theta), np.nan)
    p = design.shape[1]
    coef = back @ theta[:p]
    if np.all(np.isfinite(var)):
        se = np.sqrt(np.diag(back @ cov[:p, :p] @ back.T))
    else:
        se = np.full(p, np.nan)
    low_ci, high_ci, p_value = _wald(coef, se)
    tau = float(np.exp(theta[p + 1]))
    if tau < 1e-3:
        notes.append("the subject variance is at its boundary (about 0)")
    if not result.success:
        notes.append(f"optimiser: {result.message}")
    return RandomInterceptFit(
        method="censored-ml",
        names=full,
        coef=coef,
        se=se,
        ci_low=low_ci,
        ci_high=high_ci,
        p_value=p_value,
        sigma=float(np.exp(theta[p])),
        tau=tau,
        n_obs=len(yy),
        n_groups=int(codes.max()) + 1,
        converged=bool(result.success),
        log_likelihood=-float(result.fun),
        notes=tuple(notes),
    )


def _numerical_hessian(
    fun: _IntervalLikelihood, theta: NDArray[np.float64], rel_step: float = 1e-5
) -> NDArray[np.float64]:
    """Central differences of the analytic gradient; symmetrised ``(q, q)``."""
    q = len(theta)
    h = np.empty((q, q))
    for j in range(q):
        step = rel_step * max(1.0, abs(float(theta[j])))
        up, down = theta.copy(), theta.copy()
        up[j] += step
        down[j] -= step
        h[:, j] = (fun(up)[1] - fun(down)[1]) / (2.0 * step)
    return 0.5 * (h + h.T)
