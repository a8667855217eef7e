"""Mixed model for repeated measures (MMRM): REML with an unstructured covariance over visits.

The model trial statisticians fit to a change from baseline measured at several visits::

    y_i = X_i beta + e_i,    e_i ~ N(0, Sigma[S_i, S_i])

where ``y_i`` holds subject ``i``'s observed visits ``S_i`` (a subject with missing visits
contributes only the visits it has: no imputation, the likelihood-based handling that is valid
when data are missing at random), and ``Sigma`` (T x T over the T visits) is unstructured: a
free variance per visit and a free correlation per pair of visits. This is the model of R's
``nlme::gls(..., correlation = corSymm(form = ~ visit | subject), weights = varIdent(form = ~ 1 |
visit), method = "REML")`` and of the ``mmrm`` package's ``us(visit | subject)``.

Estimation is restricted maximum likelihood (REML). ``beta`` is profiled out (generalised least
squares for a given ``Sigma``), and the REML criterion is minimised over the T (T + 1) / 2
distinct elements of ``Sigma`` by Newton's method with the exact (analytic) gradient and
Hessian, falling back to Fisher scoring where the Hessian is not positive definite, and halving
a step that would leave ``Sigma`` not positive definite or increase the criterion. Everything
after a one-off pass over the data is computed from per-missingness-pattern sufficient
statistics, so an iteration costs the same for 100 or 100,000 subjects.

Inference: the model-based covariance of ``beta``, ``(sum_i X_i' Sigma_i^-1 X_i)^-1`` (what
``vcov()`` of a gls fit returns), and for any linear contrast ``L beta`` a t statistic with
Satterthwaite degrees of freedom: ``df = 2 v^2 / (g' A g)`` with ``v = L C L'``, ``g`` its
gradient with respect to the covariance parameters and ``A`` the inverse of the observed REML
information (the method of ``emmeans`` for gls fits and of ``mmrm``'s ``method =
"Satterthwaite"``).

Shapes: ``n`` rows (subject x visit), ``p`` fixed-effect columns, ``T`` visits, ``k`` contrasts.
All arrays are float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, stats

from kneescope.errors import InputError

FloatArray = NDArray[np.float64]

NEWTON_DECREMENT_TOL = 1e-14
"""Convergence: stop when the Newton decrement g' H^-1 g of the -2 REML criterion falls below
this (relative to the number of observations); estimates are then exact to ~1e-8 relative."""

MAX_ITERATIONS = 200
"""Newton / Fisher-scoring iterations before giving up (a fit needs ~5-15)."""

MAX_HALVINGS = 60
"""Step halvings per iteration before the step is declared not improvable."""

DF_METHODS = ("satterthwaite", "kenward-roger")
"""Small-sample inference methods of :meth:`MmrmFit.contrast`."""

SINGULAR_CORRELATION = 1e-8
"""A fit stops (and fails) when the smallest eigenvalue of the correlation matrix over visits
falls below this: the REML criterion then has no interior optimum (too few subjects for an
unstructured covariance); R's gls fails on such data too."""


@dataclass(frozen=True)
class Contrast:
    """Estimates of ``k`` linear contrasts ``L beta`` with t-based inference.

    Attributes (each a ``(k,)`` float64 array):
        estimate: ``L beta``; se: its model-based standard error;
        df: Satterthwaite degrees of freedom; t: ``estimate / se``;
        p: two-sided p-value from the t distribution with ``df``;
        lower, upper: the ``level`` confidence interval ``estimate -+ t_q(df) * se``.
        level: the confidence level (e.g. 0.95).
    """

    estimate: FloatArray
    se: FloatArray
    df: FloatArray
    t: FloatArray
    p: FloatArray
    lower: FloatArray
    upper: FloatArray
    level: float


@dataclass(frozen=True)
class _Pattern:
    """Sufficient statistics of the subjects that share one set of observed visits.

    ``idx`` (m,) visit codes observed; ``n`` subjects; ``S`` (p, p, m, m) = sum_i X_i[a, p]
    X_i[b, q] laid out as S[p, q, a, b]; ``T`` (p, m, m) = sum_i X_i[a, p] y_i[b];
    ``Y`` (m, m) = sum_i y_i y_i'; ``D`` (J_m, m, m) derivative of Sigma[idx, idx] with
    respect to each covariance parameter that touches it; ``params`` (J_m,) their indices.
    """

    idx: NDArray[np.intp]
    n: int
    S: FloatArray
    T: FloatArray
    Y: FloatArray
    D: FloatArray
    params: NDArray[np.intp]


@dataclass(frozen=True)
class _Evaluation:
    """The REML criterion and what its derivatives need, at one value of Sigma."""

    f: float
    beta: FloatArray
    cov_beta: FloatArray
    grad: FloatArray
    hessian: FloatArray
    fisher: FloatArray
    G: FloatArray  # (J, p, p): d(sum X' W X) / d theta_j, negated


@dataclass(frozen=True)
class MmrmFit:
    """A fitted MMRM.

    Attributes:
        names: the ``p`` fixed-effect column names.
        beta: ``(p,)`` REML (generalised least squares) estimates.
        cov_beta: ``(p, p)`` model-based covariance of ``beta``.
        sigma: ``(T, T)`` REML estimate of the unstructured covariance over visits, in the
            response's unit squared.
        n_obs, n_subjects, n_visits: rows, subjects and visit levels used.
        loglik: the REML log-likelihood (as R's ``logLik()`` of a REML gls fit).
        iterations: Newton / scoring iterations taken; converged: whether the criterion met
            :data:`NEWTON_DECREMENT_TOL`.
    """

    names: tuple[str, ...]
    beta: FloatArray
    cov_beta: FloatArray
    sigma: FloatArray
    n_obs: int
    n_subjects: int
    n_visits: int
    loglik: float
    iterations: int
    converged: bool
    _G: FloatArray = field(repr=False)
    _cov_theta: FloatArray = field(repr=False)
    _cov_theta_expected: FloatArray = field(repr=False)
    _theta: FloatArray = field(repr=False)
    _groups: list[_Group] = field(repr=False, compare=False)

    @property
    def se(self) -> FloatArray:
        """``(p,)`` model-based standard errors of ``beta``."""
        return np.sqrt(np.diag(self.cov_beta))

    @property
    def correlation(self) -> FloatArray:
        """``(T, T)`` correlation matrix of ``sigma``."""
        d = np.sqrt(np.diag(self.sigma))
        return np.asarray(self.sigma / np.outer(d, d), dtype=np.float64)

    @cached_property
    def cov_beta_kenward_roger(self) -> FloatArray:
        """``(p, p)`` Kenward-Roger adjusted covariance of ``beta`` (>= ``cov_beta``)."""
        return _kenward_roger_cov(
            self._theta,
            self._groups,
            self.n_visits,
            self.cov_beta,
            self._G,
            self._cov_theta_expected,
        )

    def satterthwaite_df(self, L: ArrayLike, *, expected: bool = False) -> FloatArray:
        """``(k,)`` Satterthwaite df of the contrasts ``L`` (``(p,)`` or ``(k, p)``).

        ``expected``: take the covariance of the variance parameters from the expected
        instead of the observed REML information (the Kenward-Roger df of a 1-df contrast).
        """
        Lm = self._contrast_matrix(L)
        C = self.cov_beta
        v = np.einsum("kp,pq,kq->k", Lm, C, Lm)
        CL = C @ Lm.T  # (p, k)
        g = np.einsum("pk,jpq,qk->kj", CL, self._G, CL)  # (k, J)
        cov_theta = self._cov_theta_expected if expected else self._cov_theta
        var_v = np.einsum("kj,jl,kl->k", g, cov_theta, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = 2.0 * v**2 / var_v
        return np.asarray(np.where(var_v > 0, df, np.inf), dtype=np.float64)

    def contrast(
        self, L: ArrayLike, *, level: float = 0.95, method: str = "satterthwaite"
    ) -> Contrast:
        """Estimate, SE, df, t, two-sided p and ``level`` CI of ``L beta``.

        Args:
            L: ``(p,)`` one contrast or ``(k, p)`` k contrasts (each row tested on its own).
            level: confidence level of the intervals, in (0, 1).
            method: ``"satterthwaite"`` (model-based SE, Satterthwaite df from the observed
                information: as emmeans for gls) or ``"kenward-roger"`` (the Kenward-Roger
                adjusted SE and, for a 1-df contrast, its df: Satterthwaite's formula with
                the expected information).
        """
        if not 0.0 < level < 1.0:
            raise InputError(f"confidence level must be in (0, 1), got {level}")
        if method not in DF_METHODS:
            raise InputError(f"unknown df method {method!r}; choose one of {list(DF_METHODS)}")
        Lm = self._contrast_matrix(L)
        est = Lm @ self.beta
        kr = method == "kenward-roger"
        cov = self.cov_beta_kenward_roger if kr else self.cov_beta
        se = np.sqrt(np.einsum("kp,pq,kq->k", Lm, cov, Lm))
        df = self.satterthwaite_df(Lm, expected=kr)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = est / se
        p = 2.0 * stats.t.sf(np.abs(t), df)
        q = stats.t.ppf(0.5 + level / 2.0, df)
        return Contrast(
            estimate=est,
            se=se,
            df=df,
            t=t,
            p=np.asarray(p, dtype=np.float64),
            lower=est - q * se,
            upper=est + q * se,
            level=level,
        )

    def coef_table(self, *, level: float = 0.95) -> pd.DataFrame:
        """One row per fixed effect: term, estimate, se, df, t, p, lower, upper."""
        c = self.contrast(np.eye(len(self.names)), level=level)
        return pd.DataFrame(
            {
                "term": list(self.names),
                "estimate": c.estimate,
                "se": c.se,
                "df": c.df,
                "t": c.t,
                "p": c.p,
                "lower": c.lower,
                "upper": c.upper,
            }
        )

    def _contrast_matrix(self, L: ArrayLike) -> FloatArray:
        Lm = np.atleast_2d(np.asarray(L, dtype=np.float64))
        if Lm.ndim != 2 or Lm.shape[1] != len(self.names):
            raise InputError(
                f"contrast must have {len(self.names)} columns (one per fixed effect: "
                f"{', '.join(self.names)}), got shape {np.shape(L)}"
            )
        return Lm


def _theta_pairs(n_visits: int) -> list[tuple[int, int]]:
    """The covariance parameters: Sigma[a, b] for a <= b, row by row."""
    return [(a, b) for a in range(n_visits) for b in range(a, n_visits)]


def _sigma_from_theta(theta: FloatArray, n_visits: int) -> FloatArray:
    sigma = np.zeros((n_visits, n_visits))
    iu = np.triu_indices(n_visits)
    sigma[iu] = theta
    sigma.T[iu] = theta
    return sigma


def _theta_from_sigma(sigma: FloatArray) -> FloatArray:
    return np.asarray(sigma[np.triu_indices(sigma.shape[0])], dtype=np.float64)


def _patterns(
    y: FloatArray, X: FloatArray, subj_codes: NDArray[np.intp], visit: NDArray[np.intp], T: int
) -> list[_Pattern]:
    """Group subjects by their set of observed visits and sum the sufficient statistics."""
    n_subj = int(subj_codes.max()) + 1
    p = X.shape[1]
    masks = np.zeros(n_subj, dtype=np.int64)
    np.bitwise_or.at(masks, subj_codes, np.left_shift(np.int64(1), visit.astype(np.int64)))
    pairs = _theta_pairs(T)
    out: list[_Pattern] = []
    for mask in np.unique(masks):
        idx = np.array([v for v in range(T) if mask >> v & 1], dtype=np.intp)
        m = len(idx)
        subjects = np.flatnonzero(masks == mask)
        rows = np.isin(subj_codes, subjects)
        # rows are sorted by (subject, visit): reshape into (n_k, m, ...)
        Xk = X[rows].reshape(len(subjects), m, p)
        yk = y[rows].reshape(len(subjects), m)
        pos = {int(v): i for i, v in enumerate(idx)}
        params, Ds = [], []
        for j, (a, b) in enumerate(pairs):
            if a in pos and b in pos:
                D = np.zeros((m, m))
                D[pos[a], pos[b]] = 1.0
                D[pos[b], pos[a]] = 1.0
                params.append(j)
                Ds.append(D)
        out.append(
            _Pattern(
                idx=idx,
                n=len(subjects),
                S=np.einsum("iap,ibq->pqab", Xk, Xk),
                T=np.einsum("iap,ib->pab", Xk, yk),
                Y=np.einsum("ia,ib->ab", yk, yk),
                D=np.asarray(Ds),
                params=np.asarray(params, dtype=np.intp),
            )
        )
    return out


@dataclass(frozen=True)
class _Group:
    """The patterns with the same number ``m`` of observed visits, stacked (K patterns).

    ``idx`` (K, m); ``n`` (K,); ``S`` (K, p, p, m, m); ``T`` (K, p, m, m); ``Y`` (K, m, m)
    as in :class:`_Pattern`; ``D`` (J_m, m, m) the derivatives of a pattern's Sigma block
    with respect to its J_m = m (m + 1) / 2 covariance parameters (the same for every pattern
    of the group); ``params`` (K, J_m) their indices into theta, ``onehot`` (K, J_m, J) the
    same as a 0/1 array (sums over patterns become matrix products).
    """

    idx: NDArray[np.intp]
    n: FloatArray
    S: FloatArray
    T: FloatArray
    Y: FloatArray
    D: FloatArray
    params: NDArray[np.intp]
    onehot: FloatArray


def _groups(pats: list[_Pattern], n_params: int) -> list[_Group]:
    """Stack the patterns by their number of observed visits (vectorised evaluation)."""
    out = []
    for m in sorted({len(pat.idx) for pat in pats}):
        members = [pat for pat in pats if len(pat.idx) == m]
        params = np.stack([pat.params for pat in members])
        onehot = np.zeros((*params.shape, n_params))
        np.put_along_axis(onehot, params[:, :, None], 1.0, axis=2)
        out.append(
            _Group(
                idx=np.stack([pat.idx for pat in members]),
                n=np.array([float(pat.n) for pat in members]),
                S=np.stack([pat.S for pat in members]),
                T=np.stack([pat.T for pat in members]),
                Y=np.stack([pat.Y for pat in members]),
                D=members[0].D,
                params=params,
                onehot=onehot,
            )
        )
    return out


def _evaluate(theta: FloatArray, groups: list[_Group], T: int, p: int) -> _Evaluation | None:
    """-2 REML criterion (without constants), its gradient, Hessian and Fisher information.

    Returns None when Sigma(theta) is not positive definite.
    """
    sigma = _sigma_from_theta(theta, T)
    J = len(theta)
    logdet = 0.0
    M = np.zeros((p, p))
    c = np.zeros(p)
    Ws: list[FloatArray] = []
    for g in groups:
        K, m = g.idx.shape
        mm = m * m
        sub = sigma[g.idx[:, :, None], g.idx[:, None, :]]  # (K, m, m)
        try:
            chol = np.linalg.cholesky(sub)
        except np.linalg.LinAlgError:
            return None
        diag = np.diagonal(chol, axis1=1, axis2=2)
        if np.min(diag) <= 0:
            return None
        chol_inv = np.linalg.inv(chol)
        W = np.matmul(np.swapaxes(chol_inv, 1, 2), chol_inv)
        Ws.append(W)
        logdet += 2.0 * float(np.sum(g.n * np.sum(np.log(diag), axis=1)))
        Wf = W.reshape(K, mm)
        M += np.einsum("kxa,ka->x", g.S.reshape(K, p * p, mm), Wf).reshape(p, p)
        c += np.einsum("kxa,ka->x", g.T.reshape(K, p, mm), Wf)
    try:
        chol_M = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return None
    chol_M_inv = np.linalg.inv(chol_M)
    C = chol_M_inv.T @ chol_M_inv
    beta = C @ c
    logdet_M = 2.0 * float(np.sum(np.log(np.diag(chol_M))))

    quad = 0.0
    grad = np.zeros(J)
    H = np.zeros((J, J))
    F = np.zeros((J, J))
    G = np.zeros((J, p, p))
    bvec = np.zeros((J, p))
    for g, W in zip(groups, Ws, strict=True):
        K, m = g.idx.shape
        mm = m * m
        Jm = g.D.shape[0]
        # sum_i r_i r_i' and sum_i X_i[:, p] r_i' from the sufficient statistics
        Xb_y = np.einsum("p,kpab->kab", beta, g.T)  # sum_i (X_i beta)[a] y_i[b]
        SB = np.einsum("kpqab,q->kpab", g.S, beta)  # sum_q beta_q S[p, q]
        XbXb = np.einsum("p,kpab->kab", beta, SB)
        RR = g.Y - Xb_y - np.swapaxes(Xb_y, 1, 2) + XbXb
        XR = g.T - SB  # sum_i X_i[a, p] r_i[b]
        quad += float(np.sum(W * RR))
        U = np.matmul(np.matmul(W, RR), W)  # sum_i u_i u_i', u_i = W r_i
        R = np.einsum("x,kxa->ka", C.ravel(), g.S.reshape(K, p * p, mm)).reshape(K, m, m)
        KK = np.matmul(np.matmul(W, R), W)  # W (sum_i X_i C X_i') W
        D = g.D
        Gam = g.n[:, None, None] * W - KK - U
        A = g.onehot  # (K, Jm, J): scatter-add over patterns as a matrix product
        grad += np.einsum("kjx,kj->x", A, np.einsum("kab,jab->kj", Gam, D))
        WD = np.einsum("kab,jbc->kjac", W, D)  # W D_j
        KD = np.einsum("kab,jbc->kjac", KK, D)
        UD = np.einsum("kab,jbc->kjac", U, D)
        tr_WDWD = np.einsum("kjab,klba->kjl", WD, WD)
        tr_WDKD = np.einsum("kjab,klba->kjl", WD, KD)
        tr_UDWD = np.einsum("kjab,klba->kjl", UD, WD)
        h12 = -g.n[:, None, None] * tr_WDWD + tr_WDKD + np.swapaxes(tr_WDKD, 1, 2)
        h3 = tr_UDWD + np.swapaxes(tr_UDWD, 1, 2)
        rows, cols = g.params[:, :, None], g.params[:, None, :]
        np.add.at(H, (rows, cols), h12 + h3)
        np.add.at(F, (rows, cols), -h12)
        # Z[p, q] = W S[p, q] W ; G_j[p, q] = sum_ab D_j[a, b] Z[p, q, a, b]
        Wb = W[:, None, None]
        Z = np.matmul(np.matmul(Wb, g.S), Wb).reshape(K, p * p, mm)
        Dm = D.reshape(Jm, mm)
        G += np.einsum("kjy,kjx->yx", A, np.einsum("ja,kxa->kjx", Dm, Z)).reshape(J, p, p)
        # b_j[p] = sum_i (W X_i)[:, p]' D_j u_i = sum_ab D_j[a, b] (W XR[p] W)[a, b]
        Wp = W[:, None]
        Yp = np.matmul(np.matmul(Wp, XR), Wp).reshape(K, p, mm)
        bvec += np.einsum("kjy,kjp->yp", A, np.einsum("ja,kpa->kjp", Dm, Yp))
    CG = np.einsum("pq,jqr->jpr", C, G)
    trCGCG = np.einsum("jpq,lqp->jl", CG, CG)
    H -= trCGCG
    F += trCGCG
    H -= 2.0 * bvec @ C @ bvec.T
    H = 0.5 * (H + H.T)
    F = 0.5 * (F + F.T)
    f = logdet + logdet_M + quad
    return _Evaluation(f=f, beta=beta, cov_beta=C, grad=grad, hessian=H, fisher=F, G=G)


def _kenward_roger_cov(
    theta: FloatArray,
    groups: list[_Group],
    T: int,
    C: FloatArray,
    G: FloatArray,
    cov_theta: FloatArray,
) -> FloatArray:
    """Kenward & Roger's (1997) adjusted covariance of beta, ``(p, p)``.

    ``Phi_A = Phi + 2 Phi [sum_ij w_ij (Q_ij - P_i Phi P_j)] Phi`` with ``Phi = C``,
    ``P_i = X' dSigma^-1/dtheta_i X = -G_i``, ``Q_ij = X' W D_i W D_j W X`` (sums over
    subjects), ``w = cov_theta``; the ``R_ij`` term vanishes because Sigma is linear in theta.
    ``sum_ij w_ij Q_ij = sum_s X_s' W Omega W X_s`` with ``Omega = sum_ij w_ij D_i W D_j``.
    """
    p = C.shape[0]
    sigma = _sigma_from_theta(theta, T)
    sum_q = np.zeros((p, p))
    for g in groups:
        K, m = g.idx.shape
        sub = sigma[g.idx[:, :, None], g.idx[:, None, :]]
        W = np.linalg.inv(sub)
        w_loc = cov_theta[g.params[:, :, None], g.params[:, None, :]]  # (K, Jm, Jm)
        DW = np.einsum("iab,kbc->kiac", g.D, W)  # D_i W
        omega = np.einsum("kij,kiac,jcd->kad", w_loc, DW, g.D)
        E = np.matmul(np.matmul(W, omega), W).reshape(K, m * m)
        sum_q += np.einsum("kxa,ka->x", g.S.reshape(K, p * p, m * m), E).reshape(p, p)
    sum_pcp = np.einsum("ij,ipq,qr,jrs->ps", cov_theta, G, C, G)
    adj = C + 2.0 * C @ (sum_q - sum_pcp) @ C
    return np.asarray(0.5 * (adj + adj.T), dtype=np.float64)


def _solve_pd(A: FloatArray, b: FloatArray) -> FloatArray | None:
    try:
        return np.asarray(linalg.cho_solve(linalg.cho_factor(A), b), dtype=np.float64)
    except linalg.LinAlgError:
        return None


def _min_correlation_eigenvalue(theta: FloatArray, T: int) -> float:
    sigma = _sigma_from_theta(theta, T)
    sd = np.sqrt(np.diag(sigma))
    return float(np.linalg.eigvalsh(sigma / np.outer(sd, sd))[0])


def _full_rank(xtx: FloatArray) -> bool:
    """Whether ``X`` has full column rank, from ``X'X`` (p, p) (columns scaled to unit norm)."""
    d = np.diag(xtx)
    if np.any(d <= 0):
        return False
    scaled = xtx / np.sqrt(np.outer(d, d))
    w = np.linalg.eigvalsh(scaled)
    return bool(w[0] > 1e-10 * w[-1])


def _start(pats: list[_Pattern], xtx: FloatArray, xty: FloatArray, T: int) -> FloatArray:
    """Starting covariance: pairwise covariance of OLS residuals, made positive definite.

    Computed from the patterns' sufficient statistics (no pass over the rows).
    """
    beta = np.linalg.solve(xtx, xty)
    sums = np.zeros((T, T))
    counts = np.zeros((T, T))
    for pat in pats:
        m = len(pat.idx)
        Xb_y = np.einsum("p,pab->ab", beta, pat.T)
        XbXb = np.einsum("p,q,pqab->ab", beta, beta, pat.S)
        rr = pat.Y - Xb_y - Xb_y.T + XbXb
        ix = np.ix_(pat.idx, pat.idx)
        sums[ix] += rr
        counts[ix] += pat.n * np.ones((m, m))
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.where(counts > 0, sums / np.maximum(counts, 1.0), 0.0)
    var = np.diag(cov).copy()
    fallback = float(np.mean(var[var > 0])) if np.any(var > 0) else 1.0
    np.fill_diagonal(cov, np.where(var > 0, var, fallback))
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    floor = 1e-3 * float(np.max(w)) if np.max(w) > 0 else 1.0
    cov = (v * np.maximum(w, floor)) @ v.T
    return _theta_from_sigma(0.5 * (cov + cov.T))


def fit_mmrm(
    y: ArrayLike,
    X: ArrayLike,
    subject: ArrayLike,
    visit: ArrayLike,
    names: Sequence[str],
    *,
    n_visits: int | None = None,
) -> MmrmFit:
    """Fit an MMRM by REML with an unstructured covariance over visits.

    Args:
        y: ``(n,)`` response (e.g. change from baseline), finite; drop missing rows first.
        X: ``(n, p)`` fixed-effects design, full column rank (see
            :func:`kneescope.stats.mmrm_design.build_design`).
        subject: ``(n,)`` subject labels (any hashable values).
        visit: ``(n,)`` integer visit codes ``0 .. T-1``; at most one row per subject x visit.
        names: the ``p`` column names of ``X``.
        n_visits: ``T``; default ``max(visit) + 1``.

    Returns:
        The fit; ``fit.contrast(L)`` gives estimates with Satterthwaite df.

    Raises:
        InputError: on shape mismatches, non-finite values, repeated subject x visit rows, a
            rank-deficient ``X``, or visits never observed together (the unstructured
            covariance is then not identifiable).
    """
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    X_arr = np.asarray(X, dtype=np.float64)
    n = y_arr.shape[0]
    if X_arr.ndim != 2 or X_arr.shape[0] != n:
        raise InputError(f"X must be (n, p) with n = len(y) = {n}, got shape {X_arr.shape}")
    p = X_arr.shape[1]
    names_t = tuple(str(s) for s in names)
    if len(names_t) != p:
        raise InputError(f"names has {len(names_t)} entries but X has {p} columns")
    subj = np.asarray(subject)
    vis_raw = np.asarray(visit)
    if subj.shape != (n,) or vis_raw.shape != (n,):
        raise InputError(f"subject and visit must each have {n} entries (one per row of y)")
    if not np.all(np.isfinite(y_arr)) or not np.all(np.isfinite(X_arr)):
        raise InputError(
            "y and X must be finite: drop rows with a missing response or covariate first"
        )
    if n == 0:
        raise InputError("no observations to fit")
    if not np.issubdtype(vis_raw.dtype, np.integer):
        raise InputError(f"visit must hold integer codes 0..T-1, got dtype {vis_raw.dtype}")
    vis = vis_raw.astype(np.intp)
    T = int(n_visits) if n_visits is not None else int(vis.max()) + 1
    if vis.min() < 0 or vis.max() >= T:
        raise InputError(f"visit codes must lie in 0..{T - 1}, got {vis.min()}..{vis.max()}")
    if T > 30:
        raise InputError(f"{T} visits: an unstructured covariance needs far fewer (<= 30)")
    _, subj_codes = np.unique(subj, return_inverse=True)
    subj_codes = subj_codes.astype(np.intp).ravel()
    order = np.lexsort((vis, subj_codes))
    y_s, X_s, s_s, v_s = y_arr[order], X_arr[order], subj_codes[order], vis[order]
    dup = (np.diff(s_s) == 0) & (np.diff(v_s) == 0)
    if np.any(dup):
        first = int(np.flatnonzero(dup)[0])
        raise InputError(
            f"subject {subj[order][first]!r} has two rows for visit code {v_s[first]}: "
            "an MMRM takes one value per subject and visit"
        )
    n_subj = int(s_s.max()) + 1
    pats = _patterns(y_s, X_s, s_s, v_s, T)
    xtx = np.zeros((p, p))
    xty = np.zeros(p)
    for pat in pats:
        xtx += np.einsum("pqaa->pq", pat.S)
        xty += np.einsum("paa->p", pat.T)
    if not _full_rank(xtx):
        raise InputError(
            "the design matrix is rank deficient (a visit or arm without observations, or "
            "collinear covariates): drop the empty level or covariate"
        )
    together = np.zeros((T, T), dtype=bool)
    for pat in pats:
        together[np.ix_(pat.idx, pat.idx)] = True
    if not together.all():
        a, b = (int(x) for x in np.argwhere(~together)[0])
        raise InputError(
            f"visit codes {a} and {b} are never observed in the same subject: their covariance "
            "is not identifiable; an unstructured MMRM cannot be fitted"
        )
    if n - p <= len(_theta_pairs(T)):
        raise InputError(
            f"{n} observations are too few for {p} fixed effects and an unstructured "
            f"covariance over {T} visits"
        )

    theta = _start(pats, xtx, xty, T)
    groups = _groups(pats, len(theta))
    ev = _evaluate(theta, groups, T, p)
    if ev is None:  # pragma: no cover - the start is positive definite by construction
        raise InputError("could not evaluate the REML criterion at the starting covariance")
    converged = False
    iterations = 0
    while iterations < MAX_ITERATIONS:
        iterations += 1
        step = _solve_pd(ev.hessian, ev.grad)
        if step is None or float(ev.grad @ step) <= 0:
            step = _solve_pd(ev.fisher, ev.grad)
            if step is None:
                step = ev.grad / max(1.0, float(np.max(np.abs(np.diag(ev.fisher)))))
        decrement = float(ev.grad @ step)
        if decrement < NEWTON_DECREMENT_TOL * n:
            converged = True
            break
        t = 1.0
        new: _Evaluation | None = None
        for _ in range(MAX_HALVINGS):
            cand = _evaluate(theta - t * step, groups, T, p)
            if cand is not None and cand.f <= ev.f + 1e-12 * abs(ev.f):
                new = cand
                break
            t *= 0.5
        if new is None:
            break
        theta = theta - t * step
        ev = new
        if _min_correlation_eigenvalue(theta, T) < SINGULAR_CORRELATION:
            break  # the REML criterion decreases without bound towards a singular covariance
    if not converged:
        min_eig = _min_correlation_eigenvalue(theta, T)
        per_visit = np.bincount(v_s, minlength=T)
        sparse = int(np.argmin(per_visit))
        why = (
            "the estimated covariance over visits tends to a singular matrix"
            if min_eig < 1e-4
            else f"no convergence in {iterations} iterations"
        )
        raise InputError(
            f"the REML fit failed: {why} (fewest rows: {per_visit[sparse]} at visit code "
            f"{sparse}, for {p} fixed effects and {len(theta)} covariance parameters); an "
            "unstructured MMRM needs more subjects per visit: drop sparse visits or covariates"
        )
    cov_theta = _solve_pd(ev.hessian, 2.0 * np.eye(len(theta)))
    if cov_theta is None:
        cov_theta = np.asarray(2.0 * np.linalg.pinv(ev.hessian), dtype=np.float64)
    cov_theta_expected = _solve_pd(ev.fisher, 2.0 * np.eye(len(theta)))
    if cov_theta_expected is None:
        cov_theta_expected = np.asarray(2.0 * np.linalg.pinv(ev.fisher), dtype=np.float64)
    loglik = -0.5 * ((n - p) * math.log(2.0 * math.pi) + ev.f)
    return MmrmFit(
        names=names_t,
        beta=ev.beta,
        cov_beta=ev.cov_beta,
        sigma=_sigma_from_theta(theta, T),
        n_obs=n,
        n_subjects=n_subj,
        n_visits=T,
        loglik=loglik,
        iterations=iterations,
        converged=converged,
        _G=ev.G,
        _cov_theta=cov_theta,
        _cov_theta_expected=cov_theta_expected,
        _theta=theta,
        _groups=groups,
    )
