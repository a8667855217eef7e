"""The holistic OA score: fitted on a cohort's results against the reader's KL grade,
cross-validated by subject, calibrated, saved, applied.

Definitions (every figure the fit reports):

* **target**: the reader's KL grade of the knee-visit, the clinical variable ``XRKL`` (OAI
  ``V00XRKL`` with ``SIDE``) in the catalog. Knee-visits without one are scored but not
  fitted on.
* **model**: :mod:`~kneescope.capabilities.oa_score.ordinal` on the features standardised
  (missing values replaced by the training median, then centred and divided by the training
  standard deviation). ``oa_score`` = expected KL grade (0 .. 4), ``oa_score_logit`` = the
  linear predictor, ``oa_probability_kl2`` = P(KL >= 2), the OA yes/no form.
* **cross-validation**: scikit-learn ``GroupKFold`` with the subject as the group (both knees
  and every visit of a subject in one fold); each fold's model (imputation, standardisation,
  coefficients) is fitted on the other folds only. Every fitted knee gets its **out-of-fold**
  score (``oa_fold`` = its fold); the model fitted on all knees is the one saved and the one
  that scores knees without a reader grade (``oa_fold`` = -1).
* **calibration** of the OA yes/no form, out-of-fold: 10 equal-width bins of P(KL >= 2) over
  [0, 1] (``(lo, hi]``, the first also holds 0); expected calibration error
  ``ECE = sum_b (n_b / N) |mean P_b - share with KL >= 2 in b|``; the reliability figure
  plots the same bins.
* **coefficients**: per standard deviation of each feature (standardised), of the model fitted
  on all knees; their spread over the folds is reported too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kneescope import __version__
from kneescope.capabilities.oa_score.features import (
    CLINICAL_FEATURES,
    DEFAULT_FEATURES,
    KNEE_KEYS,
    KneeFeatures,
    knee_features,
)
from kneescope.capabilities.oa_score.model_file import ScoreModel
from kneescope.capabilities.oa_score.ordinal import OrdinalFit, fit_ordinal
from kneescope.catalog.view import numeric_values_by_subject
from kneescope.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from kneescope.catalog.view import CatalogView

TARGET = "XRKL"
"""The clinical variable of the reader's KL grade."""

OA_GRADE = 2.0
"""The OA yes/no form is P(KL >= OA_GRADE)."""

ECE_BINS = 10

SCORE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("oa_score", "KL grade", "holistic OA score: expected KL grade 0..4 given the features"),
    ("oa_score_logit", "logit", "the score's linear predictor (cumulative-logit model)"),
    ("oa_probability_kl2", "1", "probability of KL grade >= 2 (OA yes/no form), calibrated"),
    ("oa_imputed_features", "1", "features of this knee replaced by the training median"),
    ("oa_reader_kl", "KL grade", "the reader's KL grade of the clinical table (target)"),
    ("oa_fold", "1", "cross-validation fold of an out-of-fold score; -1: the full model"),
)
"""Per-knee columns of the score: (name, unit, description)."""


DEFAULT_C = 10.0
"""Default inverse L2 strength of the standardised coefficients. Chosen on the validation seed
16002 with the MRI KL, radiograph and ``measure`` runs (20 features, 160 knee-visits): C = 10
against 1 gave the same ordering (Spearman with severity 0.858 vs 0.854) and a better calibrated
P(KL >= 2) (ECE 0.033 vs 0.043); stronger penalties (C <= 0.1) shrink the strongest input, the
MRI expected grade, and lost both (0.842 / 0.061 at 0.1). See benchmarks/oa_score_eval.py."""


@dataclass(frozen=True)
class ScoreOptions:
    """How to fit the score.

    Attributes:
        features: feature name patterns (:data:`~.features.DEFAULT_FEATURES`).
        clinical: add age, sex and BMI from the catalog's clinical table.
        folds: cross-validation folds (at most the number of subjects).
        c: inverse L2 strength of the coefficients (> 0; :data:`DEFAULT_C`).
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    clinical: bool = False
    folds: int = 5
    c: float = DEFAULT_C

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise InputError(f"folds must be at least 2, found {self.folds}")
        if not (math.isfinite(self.c) and self.c > 0):
            raise InputError(f"the regularisation C must be a number > 0, found {self.c}")
        if not self.features:
            raise InputError("give at least one feature pattern")


@dataclass
class ScoreResult:
    """A fitted or applied score.

    Attributes:
        scores: one row per knee-visit: the :data:`KNEE_KEYS` and :data:`SCORE_COLUMNS`.
        model: the model (fitted on every knee with a grade, or the one applied).
        summary: figures (JSON values): counts, out-of-fold agreement and calibration.
        coefficients: one dict per feature (fit only).
        reliability: one dict per calibration bin (when reader grades are known).
        dropped: features left out and why.
        matrix: ``(n, p)`` the knees' raw features in model order (NaN where missing).
    """

    scores: pd.DataFrame
    model: ScoreModel
    summary: dict[str, Any]
    coefficients: list[dict[str, Any]] = field(default_factory=list)
    reliability: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    matrix: np.ndarray | None = None


# -- catalog ----------------------------------------------------------------------------------
def reader_grades(catalog: CatalogView | None, knees: pd.DataFrame) -> np.ndarray:
    """``(n,)`` the reader's KL grade of each knee-visit (NaN where the catalog has none)."""
    out = np.full(len(knees), np.nan)
    if catalog is None:
        return out
    found: dict[tuple[str, str, str], float] = {}
    for row in catalog.clinical_values(TARGET):
        if row.get("value_num") is not None and row.get("visit") and row.get("side"):
            found[(str(row["subject"]), str(row["visit"]), str(row["side"]))] = float(
                row["value_num"]
            )
    for i, key in enumerate(zip(*(knees[k] for k in KNEE_KEYS), strict=True)):
        out[i] = found.get(tuple(str(v) for v in key), np.nan)  # type: ignore[arg-type]
    return out


def clinical_covariates(catalog: CatalogView | None, knees: pd.DataFrame) -> pd.DataFrame:
    """Age (at the knee's visit, else the subject's first recorded age), sex (1 female) and
    BMI of each knee-visit (NaN where unknown), columns :data:`CLINICAL_FEATURES`.

    Raises:
        InputError: no catalog.
    """
    import pandas as pd

    if catalog is None:
        raise InputError("clinical covariates need the workspace catalog; give -w WORKSPACE")
    age = numeric_values_by_subject(catalog, ("AGE",))
    sex = numeric_values_by_subject(catalog, ("P02SEX", "SEX"))
    bmi = numeric_values_by_subject(catalog, ("P01BMI", "BMI"))

    def pick(table: dict[str, dict[str | None, float]], subject: str, visit: str) -> float:
        values = table.get(subject, {})
        if visit in values:
            return values[visit]
        if None in values:
            return values[None]
        dated = sorted((v, x) for v, x in values.items() if v is not None)
        return dated[0][1] if dated else math.nan

    rows = []
    for subject, visit in zip(knees["subject"], knees["visit"], strict=True):
        s = pick(sex, subject, visit)
        rows.append(
            {
                "age_years": pick(age, subject, visit),
                "sex_female": (1.0 if s == 2 else 0.0) if math.isfinite(s) else math.nan,
                "bmi_kg_m2": pick(bmi, subject, visit),
            }
        )
    return pd.DataFrame(rows, index=knees.index, columns=list(CLINICAL_FEATURES))


def assemble(
    tables: Sequence[pd.DataFrame],
    catalog: CatalogView | None,
    options: ScoreOptions,
) -> KneeFeatures:
    """The knee-visits and features of ``tables`` (plus clinical covariates when asked)."""
    found = knee_features(tables, options.features)
    if not options.clinical:
        return found
    extra = clinical_covariates(catalog, found.knees)
    knees = found.knees.copy()
    features = list(found.features)
    sources = dict(found.sources)
    dropped = dict(found.dropped)
    for name in CLINICAL_FEATURES:
        values = extra[name].to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        if finite.mean() < 0.5 or np.unique(values[finite]).size < 2:
            dropped[name] = "missing for most knees or one value for all"
            continue
        knees[name] = values
        features.append(name)
        sources[name] = ("catalog clinical table",)
    return KneeFeatures(knees, tuple(features), sources, dropped, found.rows_without_knee)


# -- model ------------------------------------------------------------------------------------
def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(medians, means, sds) of ``(n, p)`` features with NaN; the sd of a constant (in this
    sample) feature is 1, so it standardises to 0 and carries no weight."""
    with np.errstate(all="ignore"):
        medians = np.nanmedian(x, axis=0)
    medians = np.where(np.isfinite(medians), medians, 0.0)
    filled = np.where(np.isfinite(x), x, medians[None, :])
    means = filled.mean(axis=0)
    sds = filled.std(axis=0)
    sds = np.where(sds > 1e-12, sds, 1.0)
    return medians, means, sds


def _fit_model(
    x: np.ndarray, grades: np.ndarray, kf: KneeFeatures, c: float, fitted_on: dict[str, Any]
) -> tuple[ScoreModel, OrdinalFit]:
    medians, means, sds = _standardisation(x)
    z = (np.where(np.isfinite(x), x, medians[None, :]) - means) / sds
    fit = fit_ordinal(z, grades, c=c)
    model = ScoreModel(
        features=kf.features,
        sources={k: tuple(v) for k, v in kf.sources.items()},
        medians=tuple(float(v) for v in medians),
        means=tuple(float(v) for v in means),
        scales=tuple(float(v) for v in sds),
        coef=tuple(float(v) for v in fit.coef),
        thresholds=tuple(float(v) for v in fit.thresholds),
        classes=tuple(float(v) for v in fit.classes),
        target=TARGET,
        oa_grade=OA_GRADE,
        c=c,
        fitted_on=fitted_on,
        kneescope_version=__version__,
    )
    return model, fit


def _as_fit(model: ScoreModel) -> OrdinalFit:
    return OrdinalFit(
        coef=np.asarray(model.coef),
        thresholds=np.asarray(model.thresholds),
        classes=np.asarray(model.classes),
        converged=True,
        iterations=0,
    )


def predict(model: ScoreModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of ``(n, p)`` raw features (columns in ``model.features`` order, NaN where
    missing): ``oa_score``, ``oa_score_logit``, ``oa_probability_kl2``,
    ``oa_imputed_features`` (``(n,)`` each)."""
    z, imputed = model.standardise(x)
    fit = _as_fit(model)
    eta = fit.linear(z)
    if model.classes[0] < OA_GRADE <= model.classes[-1]:
        p_oa = fit.probability_at_least(eta, OA_GRADE)
    else:  # a model fitted without knees on both sides of KL 2
        p_oa = np.full(eta.shape, np.nan)
    return {
        "oa_score": fit.expected_grade(eta),
        "oa_score_logit": eta,
        "oa_probability_kl2": p_oa,
        "oa_imputed_features": imputed.astype(np.float64),
    }


# -- calibration ------------------------------------------------------------------------------
def reliability_bins(
    probability: np.ndarray, outcome: np.ndarray, n_bins: int = ECE_BINS
) -> list[dict[str, Any]]:
    """Per-bin ``lower``, ``upper``, ``count``, ``mean_probability``, ``observed`` (share of
    positives; NaN for an empty bin) of probabilities against 0/1 outcomes."""
    p = np.asarray(probability, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = which == b
        n = int(inside.sum())
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": n,
                "mean_probability": float(p[inside].mean()) if n else math.nan,
                "observed": float(y[inside].mean()) if n else math.nan,
            }
        )
    return rows


def expected_calibration_error(bins: Sequence[dict[str, Any]]) -> float:
    """ECE of :func:`reliability_bins` (count-weighted mean |mean P - observed|)."""
    total = sum(int(b["count"]) for b in bins)
    if total == 0:
        return math.nan
    return float(
        sum(b["count"] * abs(b["mean_probability"] - b["observed"]) for b in bins if b["count"])
        / total
    )


def save_reliability_figure(bins: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """The reliability figure (PNG, written atomically): observed share of KL >= 2 against
    the mean predicted probability per bin, the diagonal, and the count per bin below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kneescope.io.atomic import atomic_write

    fig = Figure(figsize=(4.5, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    full = [b for b in bins if b["count"]]
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="calibrated")
    top.bar(
        [b["lower"] for b in full],
        [b["observed"] for b in full],
        width=width,
        align="edge",
        edgecolor="black",
        color="#4c72b0",
        alpha=0.8,
        label="observed share KL >= 2",
    )
    top.plot(
        [b["mean_probability"] for b in full],
        [b["observed"] for b in full],
        "o",
        color="#dd8452",
        label="bin mean P",
    )
    top.set_ylim(0, 1)
    top.set_ylabel("observed share with KL >= 2")
    top.set_title(title, fontsize=9)
    top.legend(loc="upper left", fontsize=7)
    bottom.bar(
        [b["lower"] for b in bins],
        [b["count"] for b in bins],
        width=width,
        align="edge",
        color="0.6",
    )
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("predicted P(KL >= 2), out-of-fold")
    bottom.set_ylabel("knees")
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")


# -- fit and apply ----------------------------------------------------------------------------
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.unique(a[ok]).size < 2 or np.unique(b[ok]).size < 2:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def _frame(
    kf: KneeFeatures, pred: dict[str, np.ndarray], grades: np.ndarray, fold: np.ndarray
) -> pd.DataFrame:
    """The per-knee score table: the knee keys and :data:`SCORE_COLUMNS`."""
    import pandas as pd

    out = kf.knees.loc[:, list(KNEE_KEYS)].reset_index(drop=True).copy()
    for name, values in pred.items():
        out[name] = values
    out["oa_reader_kl"] = grades
    out["oa_fold"] = fold.astype(np.int64)
    return pd.DataFrame(out)


def fit_score(
    kf: KneeFeatures, grades: np.ndarray, options: ScoreOptions, fitted_on: dict[str, Any]
) -> ScoreResult:
    """Fit the score with grouped cross-validation (see the module docstring).

    Args:
        kf: the knees and their features (:func:`assemble`).
        grades: ``(n,)`` reader KL grade per knee (NaN: unknown, not fitted on).
        options: features, folds, regularisation.
        fitted_on: what the fit was on (run names, ...), kept in the model file.

    Raises:
        InputError: fewer than 2 subjects or 20 knees with a grade, or only one grade.
    """
    from sklearn.model_selection import GroupKFold

    x = kf.matrix()
    grades = np.asarray(grades, dtype=np.float64)
    known = np.isfinite(grades)
    subjects = kf.knees["subject"].to_numpy()
    n_subjects = np.unique(subjects[known]).size
    if known.sum() < 20 or n_subjects < 2:
        raise InputError(
            f"{int(known.sum())} knee-visits of {n_subjects} subjects have a reader KL grade "
            f"({TARGET}) in the catalog; fitting a score needs at least 20, of 2 subjects or more "
            "(ingest the clinical tables, or apply a saved model with -m)"
        )
    if np.unique(grades[known]).size < 2:
        raise InputError(
            f"every graded knee has KL {grades[known][0]:g}; a score needs knees of at least "
            "two KL grades"
        )
    folds = min(options.folds, n_subjects)
    idx = np.nonzero(known)[0]
    fold_of = np.full(len(grades), -1)
    fold_coefs: list[np.ndarray] = []
    oof: dict[str, np.ndarray] = {
        name: np.full(len(grades), np.nan)
        for name in ("oa_score", "oa_score_logit", "oa_probability_kl2", "oa_imputed_features")
    }
    splitter = GroupKFold(n_splits=folds)
    for f, (train, test) in enumerate(splitter.split(x[idx], grades[idx], subjects[idx])):
        tr, te = idx[train], idx[test]
        if np.unique(grades[tr]).size < 2:
            continue
        model_f, _ = _fit_model(x[tr], grades[tr], kf, options.c, {})
        fold_coefs.append(np.asarray(model_f.coef))
        pred = predict(model_f, x[te])
        for name, values in pred.items():
            oof[name][te] = values
        fold_of[te] = f
    fitted_on = {**fitted_on, "knees": int(known.sum()), "subjects": int(n_subjects)}
    model, full_fit = _fit_model(x[known], grades[known], kf, options.c, fitted_on)
    rest = np.isnan(oof["oa_score"])
    if rest.any():
        pred = predict(model, x[rest])
        for name, values in pred.items():
            oof[name][rest] = values
    done = known & (fold_of >= 0)
    summary = _summary(kf, grades, oof, done, folds, full_fit)
    bins: list[dict[str, Any]] = []
    if done.any() and np.isfinite(oof["oa_probability_kl2"][done]).all():
        bins = reliability_bins(oof["oa_probability_kl2"][done], grades[done] >= OA_GRADE)
        summary["ece_kl2_oof"] = expected_calibration_error(bins)
    spread = np.std(np.stack(fold_coefs), axis=0) if fold_coefs else np.full(len(kf.features), 0)
    coefficients = [
        {
            "feature": name,
            "coefficient_per_sd": model.coef[i],
            "fold_sd": float(spread[i]),
            "mean": model.means[i],
            "sd": model.scales[i],
            "median": model.medians[i],
            "missing_share": float(np.mean(~np.isfinite(x[:, i]))),
            "sources": " ".join(kf.sources.get(name, (name,))),
        }
        for i, name in enumerate(kf.features)
    ]
    return ScoreResult(
        scores=_frame(kf, oof, grades, fold_of),
        model=model,
        summary=summary,
        coefficients=coefficients,
        reliability=bins,
        dropped=dict(kf.dropped),
        matrix=x,
    )


def _summary(
    kf: KneeFeatures,
    grades: np.ndarray,
    oof: dict[str, np.ndarray],
    done: np.ndarray,
    folds: int,
    full_fit: OrdinalFit,
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    score = oof["oa_score"]
    summary: dict[str, Any] = {
        "knees": len(grades),
        "knees_with_reader_kl": int(np.isfinite(grades).sum()),
        "knees_out_of_fold": int(done.sum()),
        "subjects": int(kf.knees["subject"].nunique()),
        "rows_without_knee": kf.rows_without_knee,
        "folds": folds,
        "features": list(kf.features),
        "dropped_features": dict(kf.dropped),
        "converged": full_fit.converged,
        "spearman_reader_kl_oof": _spearman(score[done], grades[done]),
    }
    y = grades[done] >= OA_GRADE
    p = oof["oa_probability_kl2"][done]
    if y.any() and (~y).any() and np.isfinite(p).all():
        summary["auc_kl2_oof"] = float(roc_auc_score(y, p))
        summary["brier_kl2_oof"] = float(np.mean((p - y) ** 2))
    return summary


def apply_score(
    model: ScoreModel, tables: Sequence[pd.DataFrame], catalog: CatalogView | None
) -> ScoreResult:
    """Score every knee-visit of ``tables`` with a saved model (no fitting).

    Raises:
        InputError: a feature of the model that the tables (or the catalog, for clinical
            covariates) do not have.
    """
    table_features = [f for f in model.features if f not in CLINICAL_FEATURES]
    clinical = [f for f in model.features if f in CLINICAL_FEATURES]
    kf = knee_features(tables, required=table_features) if table_features else None
    if kf is None:
        raise InputError("the score model has no result-column feature; fit it again")
    knees = kf.knees.copy()
    if clinical:
        extra = clinical_covariates(catalog, knees)
        for name in clinical:
            knees[name] = extra[name].to_numpy(dtype=np.float64)
    x = knees.loc[:, list(model.features)].to_numpy(dtype=np.float64)
    kf = KneeFeatures(knees, model.features, dict(model.sources), {}, kf.rows_without_knee)
    grades = reader_grades(catalog, knees)
    pred = predict(model, x)
    scores = _frame(kf, pred, grades, np.full(len(knees), -1))
    known = np.isfinite(grades)
    summary: dict[str, Any] = {
        "knees": len(knees),
        "knees_with_reader_kl": int(known.sum()),
        "subjects": int(knees["subject"].nunique()),
        "rows_without_knee": kf.rows_without_knee,
        "features": list(model.features),
        "spearman_reader_kl": _spearman(pred["oa_score"][known], grades[known]),
        "imputed_values": int(pred["oa_imputed_features"].sum()),
    }
    bins: list[dict[str, Any]] = []
    p = pred["oa_probability_kl2"][known]
    if known.any() and np.isfinite(p).all():
        bins = reliability_bins(p, grades[known] >= OA_GRADE)
        summary["ece_kl2"] = expected_calibration_error(bins)
    return ScoreResult(scores=scores, model=model, summary=summary, reliability=bins, matrix=x)
