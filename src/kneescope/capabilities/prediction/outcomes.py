"""Outcomes of a knee followed over visits, and its baseline features.

Input: a tidy knee x visit table, one row per knee and visit, with the columns ``subject``,
``side``, ``visit`` (OAI visit code), ``months`` (since baseline; derived from the visit code
when absent) and whatever the outcomes and features need (a KL grade column, a medial JSW
column, a cartilage-thickness column, the features).

Outcomes (per knee, :class:`~.config.PredictionConfig` names the columns and horizons):

* ``incident_oa``: at risk = KL 0 or 1 at baseline with a KL grade at some later visit within
  the horizon; event = KL >= 2 at any of those visits.
* ``kl_progression``: at risk = KL 0-3 at baseline with a later KL within the horizon; event =
  a KL above the baseline grade at any of those visits.
* ``jsw_loss``: at risk = medial JSW known at baseline and at the horizon visit (the visit
  ``jsw_horizon_months`` after baseline); event = JSW(horizon) - JSW(baseline) <=
  -``jsw_loss_mm`` (0.7 mm: the FNIH progression definition, Collins et al. 2016).
* ``thickness_loss``: at risk = thickness known at baseline and at the horizon visit; event =
  change <= -``thickness_sdc_mm`` (a loss beyond the smallest detectable change).

For the time-to-event (Cox) form each knee also gets ``time_months``: the months of the first
later visit that meets the event's criterion (KL grade, or the change threshold), else the
last later visit within the horizon (censored). For the two change outcomes a knee can meet
the criterion at an intermediate visit and not at the horizon (fluctuation and measurement
error): it is an event in the time-to-event form, not in the binary one.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kneescope.capabilities.prediction.config import HIDDEN, OutcomeName, PredictionConfig
from kneescope.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

KNEE = ("subject", "side")


@dataclass(frozen=True)
class KneeOutcome:
    """One outcome over the knees at risk.

    Attributes:
        name: the outcome.
        knees: DataFrame, one row per knee at risk: ``subject``, ``side``, ``event`` (0/1 int),
            ``time_months`` (float, > 0), ``time_event`` (0/1: event in the time-to-event
            form), ``baseline`` (the outcome column's baseline value).
        definition: the definition in words (with its thresholds and horizon).
        excluded: knees not at risk or without the follow-up the outcome needs, by reason.
    """

    name: OutcomeName
    knees: pd.DataFrame
    definition: str
    excluded: dict[str, int]


def prepare(table: pd.DataFrame, config: PredictionConfig) -> pd.DataFrame:
    """The knee x visit table with ``months`` (from the visit codes where absent), sorted by
    knee and months, restricted to visits at or after each knee's baseline visit; adds
    ``baseline_months`` (0 at baseline).

    Raises:
        InputError: a missing key column, an unknown visit code without ``months``, a knee
            without its baseline visit.
    """
    from kneescope.core.oai_layout import VISIT_MONTHS

    missing = [c for c in ("subject", "side", "visit") if c not in table.columns]
    if missing:
        raise InputError(
            f"the knee table has no {', '.join(missing)} column; prediction needs one row per "
            "knee and visit with subject, side and visit"
        )
    frame = table.copy()
    frame["subject"] = frame["subject"].astype(str)
    frame["side"] = frame["side"].astype(str).str.lower()
    frame["visit"] = frame["visit"].astype(str)
    if "months" not in frame.columns or frame["months"].isna().any():
        unknown = sorted(set(frame["visit"]) - set(VISIT_MONTHS))
        if unknown:
            raise InputError(
                f"visit codes {unknown[:5]} have no months; give a months column or OAI "
                "visit codes (V00, V01, ...)"
            )
        months = frame["visit"].map(dict(VISIT_MONTHS)).astype(np.float64)
        frame["months"] = (
            months if "months" not in frame.columns else frame["months"].fillna(months)
        )
    frame["months"] = frame["months"].astype(np.float64)
    frame = frame.sort_values([*KNEE, "months"], kind="mergesort").reset_index(drop=True)
    if config.baseline_visit is not None:
        base = frame.loc[frame["visit"] == config.baseline_visit, [*KNEE, "months"]]
        if base.empty:
            raise InputError(
                f"no knee has the baseline visit {config.baseline_visit!r}; visits found: "
                f"{', '.join(sorted(set(frame['visit'])))}"
            )
        base = base.drop_duplicates(list(KNEE)).rename(columns={"months": "_base"})
        frame = frame.merge(base, on=list(KNEE), how="inner")
    else:
        frame["_base"] = frame.groupby(list(KNEE))["months"].transform("min")
    frame = frame.loc[frame["months"] >= frame["_base"]].copy()
    frame["baseline_months"] = frame["months"] - frame["_base"]
    frame = frame.drop(columns="_base")
    dupes = frame.duplicated([*KNEE, "baseline_months"])
    if dupes.any():
        first = frame.loc[dupes].iloc[0]
        raise InputError(
            f"knee {first['subject']} {first['side']} has two rows at visit {first['visit']}; "
            "give one row per knee and visit (average repeated series first)"
        )
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class _Wide:
    """One column of every knee at every time: ``values`` (knees, times) float64, NaN where
    missing; ``months`` (times,) since baseline, ascending; ``index`` the knees."""

    index: pd.MultiIndex
    months: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def at(self, month: float) -> npt.NDArray[np.float64]:
        hit = np.nonzero(self.months == month)[0]
        return self.values[:, hit[0]] if hit.size else np.full(len(self.index), np.nan)


OUTCOME_COLUMN: dict[str, str] = {
    "incident_oa": "kl_column",
    "kl_progression": "kl_column",
    "jsw_loss": "jsw_column",
    "thickness_loss": "thickness_column",
}
"""The :class:`~.config.PredictionConfig` option naming the column each outcome needs."""

_WAY_OUT: dict[str, str] = {
    "kl_column": "give the reader's KL grades (the catalog's XRKL clinical values, or a run "
    "of join_runs that has them) or name the column with kl_column",
    "jsw_column": 'join the radiograph run (join_runs = ["xray"]: its medial minimum JSW) or '
    "name the column with jsw_column",
    "thickness_column": "measure cartilage thickness in this run (the measure step) or name "
    "the column with thickness_column",
}


def missing_column(frame: pd.DataFrame, name: OutcomeName, config: PredictionConfig) -> str:
    """Why outcome ``name`` cannot be computed from ``frame`` (its column is absent) and the
    way out, in words; ``""`` when the column is there."""
    option = OUTCOME_COLUMN[name]
    column = str(getattr(config, option))
    if column in frame.columns:
        return ""
    return (
        f"the knee table has no column {column!r} for {name}: {_WAY_OUT[option]}, or leave "
        "the outcome out (outcomes = [...])"
    )


def _wide(frame: pd.DataFrame, column: str) -> _Wide:
    """knee x baseline_months table of ``column``."""
    if column not in frame.columns:
        raise InputError(
            f"the knee table has no column {column!r} for this outcome; give it or name "
            "another column in the prediction options"
        )
    values = frame.loc[:, [*KNEE, "baseline_months", column]]
    values = values.assign(**{column: values[column].astype(np.float64)})
    wide = values.pivot(index=list(KNEE), columns="baseline_months", values=column)
    months = np.asarray(wide.columns, dtype=np.float64)
    order = np.argsort(months)
    return _Wide(
        index=wide.index,  # type: ignore[arg-type]
        months=months[order],
        values=wide.to_numpy(dtype=np.float64)[:, order],
    )


def _kl_outcome(
    frame: pd.DataFrame, config: PredictionConfig, name: OutcomeName
) -> tuple[pd.DataFrame | None, dict[str, int]]:
    wide = _wide(frame, config.kl_column)
    base = wide.at(0.0)
    sel = (wide.months > 0.0) & (wide.months <= float(config.kl_horizon_months))
    later = wide.values[:, sel]
    has_base = np.isfinite(base)
    has_later = np.isfinite(later).any(axis=1)
    excluded: dict[str, int] = {"no baseline KL": int((~has_base).sum())}
    with np.errstate(invalid="ignore"):
        if name == "incident_oa":
            at_risk = has_base & (base <= 1)
            crit = later >= 2
            excluded["KL >= 2 at baseline"] = int((has_base & (base > 1)).sum())
        else:
            at_risk = has_base & (base <= 3)
            crit = later > base[:, None]
            excluded["KL 4 at baseline"] = int((has_base & (base > 3)).sum())
    excluded["no later KL within the horizon"] = int((at_risk & ~has_later).sum())
    keep = at_risk & has_later
    knees = _assemble(wide.index[keep], wide.months[sel], crit[keep], later[keep], base[keep], None)
    return knees, excluded


def _change_outcome(
    frame: pd.DataFrame, column: str, horizon_months: float, threshold: float
) -> tuple[pd.DataFrame | None, dict[str, int]]:
    wide = _wide(frame, column)
    base = wide.at(0.0)
    # the horizon visit: the visit nearest the horizon within +-3 months (visit windows)
    near = np.nonzero(np.abs(wide.months - horizon_months) <= 3.0)[0]
    if near.size == 0:
        return None, {f"no visit at {horizon_months:g} months": len(wide.index)}
    at = float(wide.months[near[np.argmin(np.abs(wide.months[near] - horizon_months))]])
    sel = (wide.months > 0.0) & (wide.months <= at)
    later = wide.values[:, sel]
    end = wide.at(at)
    keep = np.isfinite(base) & np.isfinite(end)
    excluded = {
        "no baseline value": int((~np.isfinite(base)).sum()),
        f"no value at {at:g} months": int((np.isfinite(base) & ~np.isfinite(end)).sum()),
    }
    with np.errstate(invalid="ignore"):
        crit = (later - base[:, None]) <= -threshold
        binary = (end - base) <= -threshold
    knees = _assemble(
        wide.index[keep], wide.months[sel], crit[keep], later[keep], base[keep], binary[keep]
    )
    return knees, excluded


def _assemble(
    index: pd.Index,
    months: npt.NDArray[np.float64],
    crit: npt.NDArray[np.bool_],
    later: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
    binary: npt.NDArray[np.bool_] | None,
) -> pd.DataFrame:
    """Per knee: event (binary form; default: the criterion met at any later visit),
    time_months and time_event (time-to-event form)."""
    import pandas as pd

    observed = np.isfinite(later)
    met = crit & observed
    any_met = met.any(axis=1)
    n = len(index)
    first = np.where(any_met, months[np.argmax(met, axis=1)] if n else 0.0, np.nan)
    last_idx = (
        observed.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1) if n else np.zeros(0, int)
    )
    last = np.where(observed.any(axis=1), months[last_idx] if n else 0.0, np.nan)
    time = np.where(any_met, first, last)
    event = any_met if binary is None else binary
    knees = pd.DataFrame(
        {
            "subject": np.asarray(index.get_level_values("subject"), dtype=str),
            "side": np.asarray(index.get_level_values("side"), dtype=str),
            "event": event.astype(np.int64),
            "time_months": time.astype(np.float64),
            "time_event": any_met.astype(np.int64),
            "baseline": base,
        }
    )
    return knees.loc[np.isfinite(time)].reset_index(drop=True)


def knee_outcome(frame: pd.DataFrame, name: OutcomeName, config: PredictionConfig) -> KneeOutcome:
    """One outcome of every knee of the :func:`prepare`-d table (see the module docstring).

    Raises:
        InputError: the column the outcome needs is missing.
    """
    if name in ("incident_oa", "kl_progression"):
        knees, excluded = _kl_outcome(frame, config, name)
        h = config.kl_horizon_months
        definition = (
            f"KL 0-1 at baseline -> KL >= 2 at a visit within {h} months ({config.kl_column})"
            if name == "incident_oa"
            else f"KL 0-3 at baseline -> a higher KL at a visit within {h} months "
            f"({config.kl_column})"
        )
    elif name == "jsw_loss":
        knees, excluded = _change_outcome(
            frame, config.jsw_column, float(config.jsw_horizon_months), config.jsw_loss_mm
        )
        definition = (
            f"{config.jsw_column} change from baseline to {config.jsw_horizon_months} months "
            f"<= -{config.jsw_loss_mm:g} mm"
        )
    elif name == "thickness_loss":
        knees, excluded = _change_outcome(
            frame,
            config.thickness_column,
            float(config.thickness_horizon_months),
            config.thickness_sdc_mm,
        )
        definition = (
            f"{config.thickness_column} change from baseline to "
            f"{config.thickness_horizon_months} months <= -{config.thickness_sdc_mm:g} mm "
            "(the smallest detectable change)"
        )
    else:  # pragma: no cover - the config's Literal refuses it
        raise InputError(f"unknown outcome {name!r}")
    if knees is None or knees.empty:
        import pandas as pd

        knees = pd.DataFrame(
            columns=["subject", "side", "event", "time_months", "time_event", "baseline"]
        )
    return KneeOutcome(
        name=name,
        knees=knees,
        definition=definition,
        excluded={k: v for k, v in excluded.items() if v},
    )


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def baseline_features(
    frame: pd.DataFrame, config: PredictionConfig
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Per knee (``subject``, ``side``) its baseline features: the numeric columns matching
    ``config.features`` at the baseline visit (never the :data:`~.config.HIDDEN` truth
    columns), with ``config.contralateral`` also the other knee's (``contra_<name>``, NaN for
    a subject with one knee). Sex given as 1/2 (OAI ``P02SEX``) becomes ``sex_female``.

    Returns:
        (frame with ``subject``, ``side`` then one float64 column per feature; the feature
        names).

    Raises:
        InputError: no numeric column matches the patterns.
    """
    base = frame.loc[frame["baseline_months"] == 0.0].copy()
    if "sex" in base.columns and "sex_female" not in base.columns:
        sex = base["sex"]
        if sex.dtype.kind in "biuf":
            base["sex_female"] = (sex == 2).astype(np.float64).where(sex.notna())
        else:
            base["sex_female"] = sex.astype(str).str.lower().str.startswith("f").astype(np.float64)
    if "age" in base.columns and "age_years" not in base.columns:
        base["age_years"] = base["age"]
    if "bmi" in base.columns and "bmi_kg_m2" not in base.columns:
        base["bmi_kg_m2"] = base["bmi"]
    names = [
        str(c)
        for c in base.columns
        if str(c) not in (*KNEE, "visit", "months", "baseline_months")
        and _matches(str(c), config.features)
        and not _matches(str(c), HIDDEN)
        and base[c].dtype.kind in "biuf"
    ]
    if not names:
        raise InputError(
            f"no numeric baseline column matches the feature patterns "
            f"{', '.join(config.features)}; name the feature columns in the options"
        )
    features = base.loc[:, [*KNEE, *names]].astype({n: np.float64 for n in names})
    features = features.reset_index(drop=True)
    if config.contralateral:
        subject_sides = set(features["side"])
        other = features.copy()
        swap = {"right": "left", "left": "right"}
        if subject_sides <= set(swap):
            other["side"] = other["side"].map(swap)
            other = other.rename(columns={n: f"contra_{n}" for n in names})
            features = features.merge(other, on=list(KNEE), how="left")
            # a contralateral copy of a subject-level covariate carries nothing new
            same = [
                n
                for n in names
                if np.allclose(
                    features[n].to_numpy(),
                    features[f"contra_{n}"].to_numpy(),
                    equal_nan=True,
                )
            ]
            features = features.drop(columns=[f"contra_{n}" for n in same])
    feature_names = tuple(c for c in features.columns if c not in KNEE)
    return features, feature_names
