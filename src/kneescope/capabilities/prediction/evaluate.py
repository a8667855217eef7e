"""Predict every outcome with every model from baseline, cross-validated, and evaluate:
the library function the ``prediction`` cohort step and benchmarks/outcome_prediction.py share.

Per outcome: the knees at risk (:mod:`~.outcomes`), their baseline features, grouped folds
(by subject, stratified by event), each model's out-of-fold probabilities
(:mod:`~.models`), then per model AUC and AP with subject-bootstrap 95 % CIs, Brier score,
calibration bins (10 equal-count bins) and expected calibration error, and for the Cox model
the out-of-fold C-index. ``references`` are scores computed elsewhere for the same knees (the
synthetic generator's oracle): they are evaluated the same way, and each model's AUC gap to
them is reported with a paired bootstrap CI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kneescope.capabilities.prediction.config import OutcomeName, PredictionConfig
from kneescope.capabilities.prediction.models import grouped_folds, out_of_fold
from kneescope.capabilities.prediction.outcomes import (
    KNEE,
    OUTCOME_COLUMN,
    baseline_features,
    knee_outcome,
    missing_column,
    prepare,
)
from kneescope.errors import InputError
from kneescope.stats.discrimination import (
    bootstrap_difference,
    brier_score,
    calibration_bins,
    discrimination,
    expected_calibration_error,
)

if TYPE_CHECKING:
    import pandas as pd

References = Mapping[str, Mapping[str, "pd.Series"]]
"""outcome -> reference name -> Series of scores indexed by (subject, side)."""


@dataclass
class OutcomeResult:
    """One outcome's models and figures.

    Attributes:
        name, definition: the outcome.
        knees: per knee at risk: subject, side, event, time_months, time_event, fold, and
            ``p_<model>`` / ``ref_<name>`` columns.
        metrics: one dict per model and reference (``kind`` "model" or "reference").
        calibration: model -> calibration bins.
        excluded: knees left out, by reason.
        features: the feature names used.
        skipped: why the outcome was not modelled ("" when it was).
        folds: the cross-validation folds used (0 when not modelled): ``config.folds``, or
            fewer when the events or non-events are fewer than that (see ``notes``).
        notes: what was changed from the options, and why, in words.
    """

    name: OutcomeName
    definition: str
    knees: pd.DataFrame
    metrics: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    features: tuple[str, ...] = ()
    skipped: str = ""
    folds: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        n = len(self.knees)
        events = int(self.knees["event"].sum()) if n else 0
        return {
            "definition": self.definition,
            "knees": n,
            "events": events,
            "subjects": int(self.knees["subject"].nunique()) if n else 0,
            "excluded": self.excluded,
            "features": list(self.features),
            "skipped": self.skipped,
            "folds": self.folds,
            "notes": self.notes,
            "metrics": self.metrics,
        }


@dataclass
class PredictionResult:
    """Every outcome's result, and the settings."""

    outcomes: dict[str, OutcomeResult]
    config: PredictionConfig

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "outcomes": {k: v.to_json() for k, v in self.outcomes.items()},
        }


def evaluate_outcome(
    frame: pd.DataFrame,
    features: pd.DataFrame,
    feature_names: tuple[str, ...],
    name: OutcomeName,
    config: PredictionConfig,
    references: Mapping[str, pd.Series] | None = None,
) -> OutcomeResult:
    """Model and evaluate one outcome on the :func:`~.outcomes.prepare`-d table.

    An outcome whose column (``kl_column``, ``jsw_column``, ``thickness_column``) is not in
    the table is skipped with the reason and the way out when it is one of the default
    outcomes (an MRI-only run has no radiographic JSW); it is an error when the user asked
    for it (``outcomes`` or its column option given).

    Raises:
        InputError: an outcome the user asked for lacks its column.
    """
    missing = missing_column(frame, name, config)
    if missing:
        asked = {"outcomes", OUTCOME_COLUMN[name]} & config.model_fields_set
        if asked:
            raise InputError(missing)
        import pandas as pd

        empty = pd.DataFrame(
            columns=["subject", "side", "event", "time_months", "time_event", "baseline"]
        )
        return OutcomeResult(
            name=name,
            definition=f"needs the column {getattr(config, OUTCOME_COLUMN[name])!r}",
            knees=empty,
            features=feature_names,
            skipped=missing,
        )
    outcome = knee_outcome(frame, name, config)
    knees = outcome.knees.merge(features, on=list(KNEE), how="left")
    result = OutcomeResult(
        name=name,
        definition=outcome.definition,
        knees=knees.loc[:, list(outcome.knees.columns)],
        excluded=dict(outcome.excluded),
        features=feature_names,
    )
    n = len(knees)
    events = int(knees["event"].sum()) if n else 0
    if min(events, n - events) < config.min_events:
        result.skipped = (
            f"{events} events and {n - events} non-events among {n} knees at risk; "
            f"modelling needs at least {config.min_events} of each"
        )
        return result
    # stratified folds need each class in every fold: no more folds than the rarer class has
    # knees (scikit-learn warns otherwise and leaves folds without an event)
    folds = min(config.folds, events, n - events)
    if folds < 2:
        result.skipped = (
            f"{events} events and {n - events} non-events: fewer than 2 cross-validation folds"
        )
        return result
    if folds < config.folds:
        rarer = "events" if events <= n - events else "non-events"
        result.notes.append(
            f"{folds} cross-validation folds, not {config.folds}: only {folds} {rarer}"
        )
    if knees["subject"].nunique() < folds:
        result.skipped = f"{knees['subject'].nunique()} subjects: fewer than {folds} folds"
        return result
    y = knees["event"].to_numpy(dtype=np.int64)
    groups = knees["subject"].to_numpy()
    x = knees.loc[:, list(feature_names)].to_numpy(dtype=np.float64)
    finite = np.where(np.isfinite(x), x, np.nan)
    with np.errstate(invalid="ignore"):
        varies = np.nanmax(finite, axis=0, initial=-np.inf) > np.nanmin(
            finite, axis=0, initial=np.inf
        )
    if not varies.any():
        result.skipped = (
            f"no feature varies among the {n} knees at risk ({', '.join(feature_names)}); "
            "give features that do (the features option)"
        )
        return result
    fold = grouped_folds(y, groups, folds, config.seed)
    result.folds = folds
    result.knees["fold"] = fold
    horizon = {
        "incident_oa": config.kl_horizon_months,
        "kl_progression": config.kl_horizon_months,
        "jsw_loss": config.jsw_horizon_months,
        "thickness_loss": config.thickness_horizon_months,
    }[name]
    scores: dict[str, np.ndarray] = {}
    for model in config.models:
        oof = out_of_fold(
            model,
            x,
            y,
            fold,
            time=knees["time_months"].to_numpy(dtype=np.float64),
            time_event=knees["time_event"].to_numpy(dtype=np.int64),
            horizon_months=float(horizon),
        )
        p = oof.probability
        scores[model] = p
        result.knees[f"p_{model}"] = p
        d = discrimination(y, p, groups, n_boot=config.n_boot, seed=config.seed)
        bins = calibration_bins(p, y, 10, "quantile")
        result.calibration[model] = bins
        entry: dict[str, Any] = {
            "name": model,
            "kind": "model",
            **d.to_json(),
            "brier": brier_score(p, y),
            "ece": expected_calibration_error(bins),
        }
        if model == "cox":
            entry["c_index"] = oof.c_index
        result.metrics.append(entry)
    refs: dict[str, np.ndarray] = {}
    for ref_name, series in (references or {}).items():
        values = series.reindex(list(zip(knees["subject"], knees["side"], strict=True)))
        arr = values.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            result.skipped = f"reference {ref_name!r} misses knees"
            continue
        refs[ref_name] = arr
        result.knees[f"ref_{ref_name}"] = arr
        d = discrimination(y, arr, groups, n_boot=config.n_boot, seed=config.seed)
        entry = {"name": ref_name, "kind": "reference", **d.to_json()}
        if np.all((arr >= 0) & (arr <= 1)):
            bins = calibration_bins(arr, y, 10, "quantile")
            entry["brier"] = brier_score(arr, y)
            entry["ece"] = expected_calibration_error(bins)
        result.metrics.append(entry)
    for entry in result.metrics:
        if entry["kind"] != "model":
            continue
        for ref_name, arr in refs.items():
            gap = bootstrap_difference(
                y, scores[entry["name"]], arr, groups, "auc", n_boot=config.n_boot, seed=config.seed
            )
            entry[f"auc_gap_{ref_name}"] = gap.value
            entry[f"auc_gap_{ref_name}_ci"] = [gap.low, gap.high]
    return result


def predict_outcomes(
    table: pd.DataFrame,
    config: PredictionConfig,
    references: References | None = None,
) -> PredictionResult:
    """Every configured outcome, modelled and evaluated (see the module docstring).

    Args:
        table: the knee x visit table (:mod:`~.outcomes`).
        config: what to predict and how.
        references: outcome -> name -> scores per (subject, side) (e.g. the oracle).

    Raises:
        InputError: missing columns, no feature, bad visits.
    """
    frame = prepare(table, config)
    features, names = baseline_features(frame, config)
    out: dict[str, OutcomeResult] = {}
    for name in config.outcomes:
        out[name] = evaluate_outcome(
            frame, features, names, name, config, (references or {}).get(name)
        )
    return PredictionResult(outcomes=out, config=config)


def best_model(result: OutcomeResult) -> dict[str, Any] | None:
    """The model entry with the highest AUC (None when the outcome was not modelled)."""
    models = [m for m in result.metrics if m["kind"] == "model" and math.isfinite(m["auc"])]
    return max(models, key=lambda m: m["auc"]) if models else None
