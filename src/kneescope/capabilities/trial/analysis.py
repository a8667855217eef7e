"""The trial analysis of each endpoint: MMRM on change from baseline, effect sizes, responders,
power.

Per endpoint (columns of :attr:`~.data.TrialData.frame`):

* **MMRM** (:mod:`kneescope.stats.mmrm`): the change from baseline at each post-baseline
  visit ~ visit x arm + visit x baseline value (+ the baseline covariates), unstructured
  covariance over the post-baseline visits (free variances and correlations), REML,
  Satterthwaite degrees of freedom; a subject contributes the visits it has (missing visits
  are not imputed: the likelihood of the observed visits is maximised, valid under missing at
  random). Subjects without the baseline value or a covariate cannot enter the model and are
  counted. From it: the LS-mean change of each arm at each visit (covariates at their means,
  as ``emmeans``) and their difference (treatment - control) with SE, df, t, p and the
  (1 - alpha) CI.
* **Cohen's d** per visit: the LS-mean difference / the pooled SD of the observed change at
  that visit (both arms; ``ddof = 1``).
* **SRM** per arm and visit: mean observed change / its SD (``ddof = 1``); with the mean
  change, its t CI and the mean value per arm and visit (baseline too) as descriptive rows.
* **Power** at the primary visit: the fitted SE of the difference gives the effective SD of
  one subject's (adjusted) change, ``sd = se / sqrt(1/n_c + 1/n_t)`` (n: analysed subjects per
  arm; the SD includes the cost of this trial's missing visits); the power of this trial's
  size for the target effect (``[power] target_effects``, else the estimated difference) and
  the subjects per arm each wanted power needs (:mod:`kneescope.stats.power`).
* **Responders** (:mod:`.responders`): per ``[[responders]]`` entry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kneescope.capabilities.trial.config import TrialConfig
from kneescope.capabilities.trial.data import ARMS, TrialData
from kneescope.capabilities.trial.responders import ResponderResult, responders
from kneescope.errors import InputError
from kneescope.stats.power import power_from_se, sample_size_two_sample

DIFFERENCE = "treatment - control"


@dataclass(frozen=True)
class MmrmResult:
    """What the MMRM of one endpoint gives (one entry per post-baseline visit).

    Attributes:
        lsmeans: dicts ``arm, visit, estimate, se, df, ci_low, ci_high``.
        differences: dicts ``visit, estimate, se, df, t_value, p_value, ci_low, ci_high``.
        covariance: the fitted unstructured covariance of the change (``visits`` x
            ``visits``, endpoint unit^2).
        converged: whether the REML optimisation converged.
        iterations: optimiser iterations.
        visits: the post-baseline visits of ``covariance``, in time order.
    """

    lsmeans: list[dict[str, Any]]
    differences: list[dict[str, Any]]
    covariance: list[list[float]]
    converged: bool
    iterations: int = 0
    visits: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointResult:
    """One endpoint's analysis.

    Attributes:
        endpoint: the column.
        subjects: analysed subjects per arm (baseline value, covariates and >= 1 later value).
        left_out: subjects of the trial that could not enter the model, by reason.
        observations: post-baseline visits entering the model.
        mmrm: the model's results (None when it could not be fitted, see ``error``).
        lsmeans: as :attr:`MmrmResult.lsmeans` plus ``months``.
        differences: as :attr:`MmrmResult.differences` plus ``months`` and ``cohens_d``.
        descriptive: per arm and visit: ``n`` (with a value), ``n_change`` (with a change),
            ``mean_value``, ``sd_value``, ``mean_change``, ``sd_change``,
            ``ci_low``/``ci_high`` of the mean change, ``srm``.
        power: per wanted power: ``target_effect``, ``effect_source``, ``sd_effective``,
            ``power``, ``n_control``, ``n_treatment``, ``n_total``, ``power_this_trial``.
        error: why the model could not be fitted ("" when it was).
    """

    endpoint: str
    subjects: dict[str, int]
    left_out: dict[str, int]
    observations: int
    mmrm: MmrmResult | None
    lsmeans: list[dict[str, Any]]
    differences: list[dict[str, Any]]
    descriptive: list[dict[str, Any]]
    power: list[dict[str, Any]]
    error: str = ""

    def primary(self, visit: str) -> dict[str, Any] | None:
        """The difference at ``visit`` (None when not estimated)."""
        return next((d for d in self.differences if d["visit"] == visit), None)


@dataclass(frozen=True)
class TrialResult:
    """A whole trial analysis: per endpoint and per responder definition."""

    data: TrialData
    primary_visit: str
    alpha: float
    endpoints: list[EndpointResult]
    responders: list[ResponderResult]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def change_frame(data: TrialData, endpoint: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows the MMRM of ``endpoint`` uses, and the subjects left out by reason.

    Returns:
        (frame, left_out): frame with one row per subject and post-baseline visit with a
        value: ``subject``, ``visit``, ``months``, ``arm``, ``baseline`` (float, the endpoint
        at baseline), the covariates and ``change`` (float, value - baseline); left_out:
        reason -> subjects.
    """
    frame = data.frame
    base = frame.loc[frame["visit"] == data.baseline, ["subject", endpoint]].rename(
        columns={endpoint: "baseline"}
    )
    rows = frame.loc[frame["visit"] != data.baseline].merge(base, on="subject", how="left")
    rows = rows.assign(change=rows[endpoint] - rows["baseline"])
    subjects = set(frame["subject"])
    no_base = subjects - set(base.loc[base["baseline"].notna(), "subject"])
    no_cov: set[str] = set()
    if data.covariates:
        bad = frame[list(data.covariates)].isna().any(axis=1)
        no_cov = set(frame.loc[bad, "subject"]) - no_base
    rows = rows[~rows["subject"].isin(no_base | no_cov) & rows["change"].notna()]
    no_later = subjects - no_base - no_cov - set(rows["subject"])
    left_out = {
        reason: len(group)
        for reason, group in (
            ("no baseline value", no_base),
            ("a covariate missing", no_cov),
            ("no later value", no_later),
        )
        if group
    }
    columns = ["subject", "visit", "months", "arm", "baseline", *data.covariates, "change"]
    return rows.loc[:, columns].reset_index(drop=True), left_out


def _descriptive(data: TrialData, endpoint: str, alpha: float) -> list[dict[str, Any]]:
    frame = data.frame
    base = frame.loc[frame["visit"] == data.baseline, ["subject", endpoint]]
    joined = frame.loc[:, ["subject", "arm", "visit", endpoint]].merge(
        base, on="subject", suffixes=("", "__base")
    )
    joined["__change"] = joined[endpoint] - joined[f"{endpoint}__base"]
    groups = joined.groupby(["arm", "visit"], sort=False)
    value: dict[Any, dict[Any, Any]] = (
        groups[endpoint].agg(["count", "mean", "std"]).to_dict(orient="index")
    )
    change: dict[Any, dict[Any, Any]] = (
        groups["__change"].agg(["count", "mean", "std"]).to_dict(orient="index")
    )
    empty = {"count": 0.0, "mean": math.nan, "std": math.nan}
    out: list[dict[str, Any]] = []
    for arm in ARMS:
        for visit in data.visits:
            v, c = value.get((arm, visit), empty), change.get((arm, visit), empty)
            n_v, mean_v, sd_v = int(v["count"]), float(v["mean"]), float(v["std"])
            n, mean_c, sd_c = int(c["count"]), float(c["mean"]), float(c["std"])
            if visit == data.baseline:
                n, mean_c, sd_c = 0, math.nan, math.nan
            half = (
                float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd_c / math.sqrt(n)
                if n > 1 and math.isfinite(sd_c)
                else math.nan
            )
            out.append(
                {
                    "arm": arm,
                    "visit": visit,
                    "months": data.months[visit],
                    "n": n_v,
                    "n_change": n,
                    "mean_value": mean_v if n_v else math.nan,
                    "sd_value": sd_v if n_v > 1 else math.nan,
                    "mean_change": mean_c if n else math.nan,
                    "sd_change": sd_c if n > 1 else math.nan,
                    "ci_low": mean_c - half,
                    "ci_high": mean_c + half,
                    "srm": mean_c / sd_c
                    if n > 1 and math.isfinite(sd_c) and sd_c > 0
                    else math.nan,
                }
            )
    return out


def _pooled_sd(descriptive: Sequence[dict[str, Any]], visit: str) -> float:
    parts = [d for d in descriptive if d["visit"] == visit and math.isfinite(d["sd_change"])]
    if len(parts) != 2:
        return math.nan
    dof = sum(d["n_change"] - 1 for d in parts)
    if dof <= 0:
        return math.nan
    return math.sqrt(sum((d["n_change"] - 1) * d["sd_change"] ** 2 for d in parts) / dof)


def fit_endpoint_mmrm(rows: pd.DataFrame, covariates: Sequence[str], alpha: float) -> MmrmResult:
    """The MMRM of one endpoint (see the module docstring) on :func:`change_frame`'s rows.

    Raises:
        InputError: the model cannot be fitted (too few subjects for the covariance, a
            singular design).
    """
    from kneescope.stats.mmrm_design import build_design, fit_design, lsmeans

    order = rows.drop_duplicates("visit").sort_values("months", kind="stable")["visit"]
    visits = [str(v) for v in order]
    design = build_design(
        rows,
        response="change",
        visit="visit",
        visits=visits,
        arm="arm",
        arms=ARMS,
        subject="subject",
        baseline="baseline",
        covariates=tuple(covariates),
    )
    fit = fit_design(design)
    means = lsmeans(fit, design, level=1.0 - alpha)
    ls_rows = [
        {
            "arm": str(r["arm"]),
            "visit": str(r["visit"]),
            "estimate": float(r["estimate"]),
            "se": float(r["se"]),
            "df": float(r["df"]),
            "ci_low": float(r["lower"]),
            "ci_high": float(r["upper"]),
        }
        for r in means.means.to_dict(orient="records")
    ]
    diff_rows = [
        {
            "visit": str(r["visit"]),
            "estimate": float(r["estimate"]),
            "se": float(r["se"]),
            "df": float(r["df"]),
            "t_value": float(r["t"]),
            "p_value": float(r["p"]),
            "ci_low": float(r["lower"]),
            "ci_high": float(r["upper"]),
        }
        for r in means.differences.to_dict(orient="records")
    ]
    return MmrmResult(
        lsmeans=ls_rows,
        differences=diff_rows,
        covariance=np.asarray(fit.sigma, dtype=np.float64).tolist(),
        converged=bool(fit.converged),
        iterations=int(fit.iterations),
        visits=tuple(visits),
    )


def _power(
    endpoint: str,
    difference: dict[str, Any] | None,
    subjects: dict[str, int],
    config: TrialConfig,
) -> list[dict[str, Any]]:
    if difference is None or not math.isfinite(difference["se"]) or difference["se"] <= 0:
        return []
    n_c, n_t = subjects["control"], subjects["treatment"]
    se, df = float(difference["se"]), float(difference["df"])
    target = config.power.target_effects.get(endpoint)
    effect = float(target) if target is not None else abs(float(difference["estimate"]))
    source = "config" if target is not None else "estimated"
    sd = se / math.sqrt(1.0 / n_c + 1.0 / n_t)
    this = power_from_se(effect, se, df, config.analysis.alpha) if effect else math.nan
    out = []
    for wanted in config.power.power:
        if effect == 0.0:
            size = None
        else:
            size = sample_size_two_sample(
                effect, sd, wanted, config.analysis.alpha, config.power.ratio
            )
        out.append(
            {
                "endpoint": endpoint,
                "visit": difference["visit"],
                "target_effect": effect,
                "effect_source": source,
                "se": se,
                "df": df,
                "sd_effective": sd,
                "power": wanted,
                "n_control": size.n_control if size else math.nan,
                "n_treatment": size.n_treatment if size else math.nan,
                "n_total": size.total if size else math.nan,
                "power_this_trial": this,
                "n_control_this_trial": n_c,
                "n_treatment_this_trial": n_t,
            }
        )
    return out


def analyse_endpoint(data: TrialData, endpoint: str, config: TrialConfig) -> EndpointResult:
    """One endpoint's analysis (module docstring); a model that cannot be fitted leaves
    ``mmrm`` None and says why in ``error`` (the descriptive rows are still there)."""
    alpha = config.analysis.alpha
    rows, left_out = change_frame(data, endpoint)
    subjects = {arm: int(rows.loc[rows["arm"] == arm, "subject"].nunique()) for arm in ARMS}
    descriptive = _descriptive(data, endpoint, alpha)
    error = ""
    fit: MmrmResult | None = None
    if min(subjects.values()) < 2:
        error = (
            f"{endpoint}: too few subjects with a baseline and a later value "
            f"(control {subjects['control']}, treatment {subjects['treatment']})"
        )
    else:
        try:
            fit = fit_endpoint_mmrm(rows, data.covariates, alpha)
        except InputError as exc:
            error = f"{endpoint}: {exc}"
    lsmeans: list[dict[str, Any]] = []
    differences: list[dict[str, Any]] = []
    if fit is not None:
        lsmeans = [{**r, "months": data.months[r["visit"]]} for r in fit.lsmeans]
        for r in fit.differences:
            pooled = _pooled_sd(descriptive, r["visit"])
            d = r["estimate"] / pooled if pooled and math.isfinite(pooled) else math.nan
            differences.append({**r, "months": data.months[r["visit"]], "cohens_d": d})
    primary = next((d for d in differences if d["visit"] == _primary(data, config)), None)
    return EndpointResult(
        endpoint=endpoint,
        subjects=subjects,
        left_out=left_out,
        observations=len(rows),
        mmrm=fit,
        lsmeans=lsmeans,
        differences=differences,
        descriptive=descriptive,
        power=_power(endpoint, primary, subjects, config),
        error=error,
    )


def _primary(data: TrialData, config: TrialConfig) -> str:
    visit = config.analysis.primary_visit or data.visits[-1]
    if visit not in data.visits[1:]:
        raise InputError(
            f"primary_visit {visit} is not a post-baseline visit of the trial "
            f"({', '.join(data.visits[1:])})"
        )
    return visit


def analyse(data: TrialData, config: TrialConfig) -> TrialResult:
    """Every endpoint and responder definition of ``config`` on ``data``.

    Raises:
        InputError: a responder endpoint or visit that is not analysed, a bad primary visit.
    """
    started = time.perf_counter()
    primary = _primary(data, config)
    for definition in config.responders:
        if definition.endpoint not in data.endpoints:
            raise InputError(
                f"responder endpoint {definition.endpoint!r} is not one of the analysed "
                f"endpoints ({', '.join(data.endpoints)}); add it to analysis.endpoints"
            )
        if definition.visit is not None and definition.visit not in data.visits[1:]:
            raise InputError(
                f"responder visit {definition.visit} is not a post-baseline visit of the "
                f"trial ({', '.join(data.visits[1:])})"
            )
    unknown = sorted(set(config.power.target_effects) - set(data.endpoints))
    if unknown:
        raise InputError(
            f"power.target_effects names {unknown[0]!r}, which is not an analysed endpoint"
        )
    results = [analyse_endpoint(data, e, config) for e in data.endpoints]
    responder_results = [
        responders(
            data.frame,
            definition,
            baseline=data.baseline,
            visit=definition.visit or primary,
            alpha=config.analysis.alpha,
        )
        for definition in config.responders
    ]
    return TrialResult(
        data=data,
        primary_visit=primary,
        alpha=config.analysis.alpha,
        endpoints=results,
        responders=responder_results,
        seconds=time.perf_counter() - started,
    )
