"""Data-driven phenotypes: Gaussian mixtures chosen by BIC, their stability by bootstrap.

* :func:`select_mixture`: standardise the features, fit a Gaussian mixture
  (scikit-learn, full covariances, several restarts) for each number of clusters in a range,
  keep the one with the lowest BIC.
* :func:`bootstrap_stability`: refit the chosen mixture on bootstrap resamples of the
  subjects (both knees of a subject drawn together) and label every original knee with it;
  the adjusted Rand index (ARI) of each bootstrap labelling with the full-data labelling
  measures how reproducible the phenotypes are (1 = identical partition, ~0 = chance).
* :func:`agreement`: ARI of a labelling with known classes (the generator's truth).

Arrays in, numbers out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kneescope.errors import InputError


@dataclass(frozen=True)
class MixtureSelection:
    """The mixture chosen by BIC.

    Attributes:
        k: number of clusters chosen.
        bic: ``{k: BIC}`` for every k tried (lower is better).
        labels: ``(n,)`` int64 cluster of each row (0..k-1, ordered by cluster size, largest
            first).
        probability: ``(n,)`` float64 posterior probability of the assigned cluster.
        means: ``(k, p)`` cluster means in the original feature units.
        sizes: ``(k,)`` rows per cluster.
        centre, scale: ``(p,)`` the standardisation used (mean, SD per feature).
        seed: random seed of the fits.
        rejected: ``{k: reason}`` for each k tried but not eligible: a fit with a cluster of
            fewer than ``features + 1`` rows (its full covariance is singular; BIC would
            reward it), or more clusters than the rows can fill.
    """

    k: int
    bic: dict[int, float]
    labels: NDArray[np.int64]
    probability: NDArray[np.float64]
    means: NDArray[np.float64]
    sizes: NDArray[np.int64]
    centre: NDArray[np.float64]
    scale: NDArray[np.float64]
    seed: int
    rejected: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stability:
    """Bootstrap stability of a clustering.

    Attributes:
        ari: ``(b,)`` ARI of each bootstrap refit's labels of all rows with the reference.
        mean, low, high: mean and 2.5 / 97.5 percentiles of ``ari``.
        k_chosen: ``(b,)`` the k BIC chose in each resample (when re-selected), else all k.
    """

    ari: NDArray[np.float64]
    mean: float
    low: float
    high: float
    k_chosen: NDArray[np.int64]


def _matrix(x: ArrayLike) -> NDArray[np.float64]:
    xx = np.asarray(x, dtype=np.float64)
    if xx.ndim != 2 or xx.shape[0] < 10 or xx.shape[1] < 1:
        raise InputError(
            f"phenotyping needs a (rows, features) table of at least 10 rows; got {xx.shape}"
        )
    if not np.isfinite(xx).all():
        raise InputError("phenotype features must be finite; drop knees with missing values")
    return xx


def _standardise(
    x: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    centre = x.mean(axis=0)
    scale = x.std(axis=0)
    if np.any(scale == 0):
        raise InputError("a phenotype feature does not vary; leave it out")
    return (x - centre) / scale, centre, scale


def _fit(z: NDArray[np.float64], k: int, seed: int, restarts: int) -> object:
    """One mixture fit, single-threaded (small matrices: BLAS threads only cost time)."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        return GaussianMixture(
            n_components=k,
            covariance_type="full",
            n_init=restarts,
            random_state=seed,
            reg_covar=1e-4,
        ).fit(z)


def _too_small(model: object, z: NDArray[np.float64]) -> str:
    """Why a fitted mixture is not eligible for BIC selection ("" when it is): a cluster
    (hard assignment) of fewer than ``features + 1`` rows, whose full covariance is
    singular (only ``reg_covar`` keeps it invertible, and the likelihood of its few points,
    hence BIC, is then arbitrarily good)."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    k = int(model.n_components)  # type: ignore[attr-defined]
    if k == 1:
        return ""
    need = z.shape[1] + 1
    with threadpool_limits(limits=1):
        labels = np.asarray(model.predict(z))  # type: ignore[attr-defined]
    smallest = int(np.bincount(labels, minlength=k).min())
    if smallest < need:
        rows = "row" if smallest == 1 else "rows"
        return (
            f"a cluster of {smallest} {rows}: fewer than features + 1 = {need}, its "
            "covariance is singular"
        )
    return ""


def _relabel(labels: NDArray[np.int64], k: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Labels renumbered by cluster size (largest 0); also the order used."""
    counts = np.bincount(labels, minlength=k)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[labels], order


def select_mixture(
    x: ArrayLike, k_range: Sequence[int] = (1, 2, 3, 4, 5), *, seed: int = 0, restarts: int = 4
) -> MixtureSelection:
    """Gaussian mixture with the number of clusters of lowest BIC.

    Args:
        x: ``(n, p)`` features (any units: standardised inside).
        k_range: numbers of clusters to try (each >= 1, < n).
        seed: random seed (k-means initialisations).
        restarts: initialisations per k (the best likelihood kept).

    Raises:
        InputError: too few rows, non-finite or constant features, a bad k.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    xx = _matrix(x)
    ks = sorted({int(k) for k in k_range})
    if not ks or ks[0] < 1 or ks[-1] >= len(xx):
        raise InputError(f"numbers of clusters {ks} must lie in 1..{len(xx) - 1}")
    z, centre, scale = _standardise(xx)
    bic: dict[int, float] = {}
    models: dict[int, object] = {}
    rejected: dict[int, str] = {}
    need = z.shape[1] + 1
    for k in ks:
        if k > 1 and k * need > len(z):
            rejected[k] = f"{k} clusters of at least features + 1 = {need} rows need {k * need}"
            continue
        model = _fit(z, k, seed, restarts)
        bic[k] = float(model.bic(z))  # type: ignore[attr-defined]
        models[k] = model
        why = _too_small(model, z)
        if why:
            rejected[k] = why
    eligible = [k for k in bic if k not in rejected]
    if not eligible:
        raise InputError(
            f"no number of clusters in {ks} gives clusters of at least features + 1 = {need} "
            f"rows on {len(z)} rows; try k = 1 or fewer features"
        )
    best = min(eligible, key=lambda k: bic[k])
    model = models[best]
    with threadpool_limits(limits=1):
        proba = np.asarray(model.predict_proba(z))  # type: ignore[attr-defined]
    raw = np.asarray(proba.argmax(axis=1), dtype=np.int64)
    labels, order = _relabel(raw, best)
    means = np.asarray(model.means_)[order] * scale + centre  # type: ignore[attr-defined]
    return MixtureSelection(
        k=best,
        bic=bic,
        labels=labels,
        probability=proba.max(axis=1),
        means=means,
        sizes=np.bincount(labels, minlength=best).astype(np.int64),
        centre=centre,
        scale=scale,
        seed=seed,
        rejected=rejected,
    )


def agreement(labels: ArrayLike, classes: ArrayLike) -> float:
    """Adjusted Rand index of two labellings of the same rows (1 identical, ~0 chance)."""
    from sklearn.metrics import adjusted_rand_score

    a, b = np.asarray(labels), np.asarray(classes)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"labellings of different shapes {a.shape} and {b.shape}")
    return float(adjusted_rand_score(a, b))


def bootstrap_stability(
    x: ArrayLike,
    reference: MixtureSelection,
    groups: ArrayLike | None = None,
    *,
    resamples: int = 50,
    seed: int = 0,
    reselect: Sequence[int] | None = None,
    restarts: int = 2,
) -> Stability:
    """ARI between the reference labels and refits on bootstrap resamples.

    Each resample draws groups (subjects) with replacement, refits a mixture with
    ``reference.k`` clusters (or re-selects k over ``reselect`` by BIC) on the resampled
    rows, standardised as the reference, and labels every original row; its ARI with
    ``reference.labels`` is one draw.

    Args:
        x: ``(n, p)`` the features the reference was fitted on.
        reference: :func:`select_mixture` on ``x``.
        groups: ``(n,)`` subject labels (rows of a subject resampled together); None: rows.
        resamples: bootstrap resamples (>= 2).
        seed: random seed.
        reselect: choose k by BIC again in each resample over these ks (stability of the
            number of phenotypes too); None: keep ``reference.k``.
        restarts: initialisations per fit.

    Raises:
        InputError: shapes that do not match the reference, fewer than 2 resamples.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    xx = _matrix(x)
    if len(xx) != len(reference.labels):
        raise InputError(f"{len(xx)} rows but the reference labelled {len(reference.labels)}")
    if resamples < 2:
        raise InputError("bootstrap stability needs at least 2 resamples")
    z = (xx - reference.centre) / reference.scale
    gg = np.arange(len(xx)) if groups is None else np.asarray(groups)
    if gg.shape != (len(xx),):
        raise InputError(f"groups {gg.shape} must have one label per row ({len(xx)})")
    uniq, codes = np.unique(gg, return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    aris = np.empty(resamples)
    chosen = np.empty(resamples, dtype=np.int64)
    for b in range(resamples):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        rows = np.concatenate([members[g] for g in pick])
        sample = z[rows]
        fit_seed = int(rng.integers(0, 2**31 - 1))
        if reselect:
            best_bic, model = np.inf, None
            for k in sorted({int(k) for k in reselect}):
                if k >= len(sample):
                    continue
                if k > 1 and k * (sample.shape[1] + 1) > len(sample):
                    continue
                m = _fit(sample, k, fit_seed, restarts)
                value = float(m.bic(sample))  # type: ignore[attr-defined]
                if value < best_bic and not _too_small(m, sample):
                    best_bic, model = value, m
            if model is None:  # no eligible k in this resample: the reference's k
                model = _fit(sample, reference.k, fit_seed, restarts)
        else:
            model = _fit(sample, reference.k, fit_seed, restarts)
        chosen[b] = int(model.n_components)  # type: ignore[attr-defined]
        with threadpool_limits(limits=1):
            labels = np.asarray(model.predict(z))  # type: ignore[attr-defined]
        aris[b] = agreement(labels, reference.labels)
    return Stability(
        ari=aris,
        mean=float(aris.mean()),
        low=float(np.percentile(aris, 2.5)),
        high=float(np.percentile(aris, 97.5)),
        k_chosen=chosen,
    )
