"""The prediction models and their out-of-fold predictions (grouped cross-validation).

* ``logistic``: scikit-learn pipeline: median imputation (with missing-value indicators),
  constant features dropped, standardisation, L2 logistic regression (``C`` = :data:`LOGISTIC_C`).
* ``gbm``: scikit-learn ``HistGradientBoostingClassifier`` (missing values handled natively),
  settings :data:`GBM_PARAMS`.
* ``cox``: lifelines ``CoxPHFitter`` (ridge penalty :data:`COX_PENALIZER`) on the same imputed,
  standardised features, fitted on (``time_months``, ``time_event``); its risk score is the
  partial hazard, its probability of an event by the horizon ``1 - S(horizon | x)``.

Cross-validation: scikit-learn ``StratifiedGroupKFold`` with the subject as the group (both
knees of a subject in one fold), shuffled with the config's seed; every knee is predicted by
the model fitted on the other folds (imputation and standardisation included).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.capabilities.prediction.config import ModelName
from kneescope.errors import InputError

Array = npt.NDArray[np.float64]

LOGISTIC_C = 1.0
"""Inverse L2 strength of the standardised logistic coefficients (C = 0.1 gave the same
out-of-fold AUCs within 0.007 on the validation seed 17001)."""

LOGISTIC_SPLINE_KNOTS = 0
"""Knots of the per-feature B-spline basis of the logistic model (an additive logistic model,
a GAM); 0: linear in each standardised feature. On the validation seed 17001, 4 knots gained
on JSW loss (AUC 0.790 against 0.763) and lost elsewhere (KL progression 0.656 against
0.658, thickness loss 0.698 against 0.704): linear kept."""

GBM_PARAMS: dict[str, Any] = {
    "learning_rate": 0.02,
    "max_iter": 300,
    "max_leaf_nodes": 4,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    "early_stopping": False,
}
"""Gradient-boosting settings, chosen on the validation seed 17001 (2,000 subjects, the four
outcomes; benchmarks/outcome_prediction.py): small trees (4 leaves, >= 100 knees a leaf),
slow learning (0.02 x 300) gave out-of-fold AUCs 0.810 / 0.632 / 0.777 / 0.681 (incident OA,
KL progression, JSW loss, thickness loss) against 0.808 / 0.604 / 0.748 / 0.689 with 8-leaf
trees at 0.05 x 200: a few hundred events do not support deeper trees."""

COX_PENALIZER = 0.01
"""Ridge penalty of the Cox model (lifelines ``penalizer``, L2 only)."""


def single_thread() -> Any:
    """A context in which OpenMP/BLAS run one thread: on a shared machine the gradient
    boosting's OpenMP threads otherwise spin against other processes (20x slower measured on
    2 busy cores); the models here are small."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    return threadpool_limits(limits=1)


def _preprocess() -> Any:
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        VarianceThreshold(0.0),  # a feature constant in the training folds carries nothing
        StandardScaler(),
    )


def make_classifier(name: ModelName) -> Any:
    """An unfitted scikit-learn classifier ``name`` (``logistic`` or ``gbm``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if name == "logistic":
        if LOGISTIC_SPLINE_KNOTS:
            from sklearn.preprocessing import SplineTransformer

            return make_pipeline(
                _preprocess(),
                SplineTransformer(n_knots=LOGISTIC_SPLINE_KNOTS, degree=3, knots="quantile"),
                LogisticRegression(C=LOGISTIC_C, max_iter=4000),
            )
        return make_pipeline(_preprocess(), LogisticRegression(C=LOGISTIC_C, max_iter=2000))
    if name == "gbm":
        return HistGradientBoostingClassifier(random_state=0, **GBM_PARAMS)
    raise InputError(f"{name!r} is not a classifier; expected logistic or gbm")


@dataclass(frozen=True)
class CoxModel:
    """A fitted Cox model with its preprocessing."""

    prep: Any
    fitter: Any
    columns: tuple[str, ...]

    def risk(self, x: Array) -> Array:
        """``(n,)`` partial hazards ``exp(x' beta)`` of ``(n, p)`` raw features."""
        import pandas as pd

        z = pd.DataFrame(self.prep.transform(x), columns=list(self.columns))
        return np.asarray(self.fitter.predict_partial_hazard(z), dtype=np.float64).ravel()

    def probability(self, x: Array, horizon_months: float) -> Array:
        """``(n,)`` probability of the event by ``horizon_months``: ``1 - S(t | x)``."""
        import pandas as pd

        z = pd.DataFrame(self.prep.transform(x), columns=list(self.columns))
        surv = self.fitter.predict_survival_function(z, times=[horizon_months])
        return np.clip(1.0 - np.asarray(surv, dtype=np.float64).ravel(), 0.0, 1.0)


def fit_cox(x: Array, time: Array, event: Array) -> CoxModel:
    """Fit the Cox model on ``(n, p)`` raw features (NaN allowed), times and events."""
    import pandas as pd
    from lifelines import CoxPHFitter  # type: ignore[import-untyped]

    prep = _preprocess()
    z = prep.fit_transform(x)
    columns = tuple(f"x{i}" for i in range(z.shape[1]))
    data = pd.DataFrame(z, columns=list(columns))
    data["T"] = time
    data["E"] = event
    fitter = CoxPHFitter(penalizer=COX_PENALIZER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter.fit(data, duration_col="T", event_col="E")
    return CoxModel(prep, fitter, columns)


def grouped_folds(
    event: npt.NDArray[np.int64], groups: npt.NDArray[Any], folds: int, seed: int
) -> npt.NDArray[np.int64]:
    """``(n,)`` fold of each knee: stratified by event, grouped by subject.

    Raises:
        InputError: fewer subjects than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = np.unique(groups).size
    if n_groups < folds:
        raise InputError(
            f"{n_groups} subjects cannot fill {folds} cross-validation folds; use fewer folds"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.full(event.size, -1, dtype=np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros(event.size), event, groups)):
        out[test] = k
    return out


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold predictions of one model.

    Attributes:
        probability: ``(n,)`` predicted probability of the event (Cox: by the horizon).
        risk: ``(n,)`` the model's ranking score (= probability; Cox: the partial hazard,
            comparable only within a fold's model, so the C-index is computed per fold).
        c_index: the Cox model's out-of-fold C-index (mean over folds); NaN for classifiers.
    """

    probability: Array
    risk: Array
    c_index: float


def out_of_fold(
    name: ModelName,
    x: Array,
    event: npt.NDArray[np.int64],
    fold: npt.NDArray[np.int64],
    *,
    time: Array | None = None,
    time_event: npt.NDArray[np.int64] | None = None,
    horizon_months: float | None = None,
) -> OutOfFold:
    """Out-of-fold predictions of model ``name`` on ``(n, p)`` features.

    Raises:
        InputError: a Cox model without times and events.
    """
    from kneescope.stats.discrimination import concordance

    n = event.size
    probability = np.full(n, np.nan)
    risk = np.full(n, np.nan)
    c_values: list[float] = []
    for k in np.unique(fold):
        test = fold == k
        train = ~test
        if name == "cox":
            if time is None or time_event is None or horizon_months is None:
                raise InputError("the Cox model needs times, events and a horizon")
            model = fit_cox(x[train], time[train], time_event[train])
            probability[test] = model.probability(x[test], horizon_months)
            risk[test] = model.risk(x[test])
            c_values.append(concordance(time[test], risk[test], time_event[test]))
        else:
            clf = make_classifier(name)
            y_train = event[train]
            if np.unique(y_train).size < 2:
                probability[test] = float(y_train.mean())
            else:
                with single_thread():
                    clf.fit(x[train], y_train)
                    probability[test] = clf.predict_proba(x[test])[:, 1]
            risk[test] = probability[test]
    c_index = float(np.nanmean(c_values)) if c_values else float("nan")
    return OutOfFold(probability=probability, risk=risk, c_index=c_index)
