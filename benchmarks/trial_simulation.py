"""Simulated randomised trials on the generator: does ``kneescope trial``'s MMRM keep its
promises (CI coverage of the true effect, type-I error, power)?

For each setting (the generator's ``treatment_effect``: the fraction by which treatment slows
progression; 0 = a null trial) ``--trials`` trials of ``--subjects`` subjects are simulated
and analysed exactly as ``kneescope trial`` analyses a table (``trial.data.assemble`` with
``knee = "index"`` by baseline KL grade, then ``trial.analysis.analyse_endpoint``: MMRM of
the change from baseline ~ visit x arm + visit x baseline, unstructured covariance, REML,
Satterthwaite df). Reported per setting:

* coverage: the share of trials whose 95 % CI of the LS-mean difference at the primary
  visit holds the generator's true effect (``synth.endpoints.true_treatment_effect``: the
  same knees treated and untreated, noise-free, index knees; target 93-97 %);
* rejection rate: the share with p < 0.05 (at effect 0 the type-I error: target 4-6 %);
* estimated power: the mean over trials of the power each trial's fit gives for the true
  effect (its SE and df, ``stats.power.power_from_se``), against the rejection rate
  (target: within +-5 points);
* bias (mean estimate - truth), SD of the estimates against the mean SE, and Monte-Carlo
  SEs of the shares.

How a trial is drawn (``--mode pool``, default): the generator's baseline knees are
planned once (``synth.endpoints.endpoint_table`` of a ``randomise = True`` cohort of
``--pool-subjects`` subjects at V00: baseline latent state, measured baseline endpoints,
randomised arm); each trial samples ``--subjects`` of them without replacement and draws
their whole future afresh with the generator's own post-baseline model
(``synth.endpoints.simulate_future``: rate factors, non-progressors, drift, fluctuation,
measurement noise) under the setting's effect. ``--mode full`` instead plans every trial's
cohort from scratch (``endpoint_table`` of a cohort with the trial's own seed: exactly the
cohorts ``kneescope synth --randomise`` writes, ~9 ms per subject, so fewer trials; visits
V00, V01, V03, as the synthetic cohorts have no 18-month visit). Each
follow-up visit loses ``--dropout`` of the remaining subjects (monotone, completely at
random); nothing is imputed.

    nice .venv/bin/python benchmarks/trial_simulation.py --trials 1000 --effects 0,0.3,0.6 \
        --pool-seed 17101 --json /work/data17/D2/trial_simulation_test.json

Seeds: the pool is ``--pool-seed``; trial ``t`` of setting ``s`` draws from
``SeedSequence([pool_seed, s, t])``; the truth's cohort is seeded ``--pool-seed`` + 1.
Validation seeds 17001-17099, the locked test seed 17101. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from kneescope.capabilities.trial.analysis import analyse_endpoint
from kneescope.capabilities.trial.config import TrialConfig
from kneescope.capabilities.trial.data import assemble
from kneescope.stats.power import power_from_se
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.endpoints import (
    endpoint_table,
    index_knees,
    simulate_future,
    true_treatment_effect,
)

VISITS = ("V00", "V01", "V02", "V03")
MONTHS = (0, 12, 18, 24)
"""The seed's design: 4 visits in 2 years (OAI codes and their months)."""


def spec_of(seed: int, subjects: int, effect: float, visits: tuple[str, ...]) -> CohortSpec:
    return CohortSpec(
        subjects=subjects,
        visits=visits,
        seed=seed,
        treatment_effect=effect,
        randomise=True,
        mri=False,
        radiographs=False,
        full_leg=False,
    )


FULL_VISITS = ("V00", "V01", "V03")
FULL_MONTHS = (0, 12, 24)
"""``--mode full``: the synthetic cohorts have no 18-month visit code."""


def trial_config(endpoint: str, primary: str, visits: tuple[str, ...]) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "name": "simulated",
            "data": {"table": "simulated.csv"},
            "arms": {"variable": "arm", "control": "control", "treatment": "treatment"},
            "analysis": {
                "endpoints": [endpoint],
                "visits": list(visits),
                "primary_visit": primary,
                "knee": "index",
                "index_by": "klg",
            },
        }
    )


def dropout(
    table: pd.DataFrame, rate: float, rng: np.random.Generator, months: tuple[int, ...] = MONTHS
) -> pd.DataFrame:
    """Monotone MCAR dropout: at each follow-up visit (``months[1:]``) ``rate`` of the
    remaining subjects leave (both knees), never to return."""
    if rate <= 0:
        return table
    subjects = table["subject"].unique()
    leave_at = np.full(len(subjects), np.inf)
    for month in months[1:]:
        gone = (rng.random(len(subjects)) < rate) & ~np.isfinite(leave_at)
        leave_at[gone] = month
    limit = dict(zip(subjects, leave_at, strict=True))
    return table[table["months"] < table["subject"].map(limit)]


def pool_trial(
    pool: pd.DataFrame,
    subjects: int,
    effect: float,
    endpoint: str,
    drop: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One trial's tidy table: ``subjects`` sampled from the baseline pool (both knees), a
    fresh future for each knee under ``effect``, then dropout."""
    ids = pool["subject"].unique()
    chosen = rng.choice(ids, size=subjects, replace=False)
    base = pool[pool["subject"].isin(set(chosen))].reset_index(drop=True)
    future = simulate_future(base, MONTHS[1:], rng, treatment_effect=effect)
    keep = ["subject", "side", "arm", "klg", endpoint]
    rows = [base.loc[:, keep].assign(visit=VISITS[0], months=0)]
    later = base.loc[future["row"].to_numpy(), ["subject", "side", "arm"]].reset_index(drop=True)
    later["klg"] = future["klg"].to_numpy()
    later[endpoint] = future[endpoint].to_numpy()
    later["months"] = future["months"].to_numpy()
    later["visit"] = later["months"].map(dict(zip(MONTHS, VISITS, strict=True)))
    rows.append(later)
    return dropout(pd.concat(rows, ignore_index=True), drop, rng)


def full_trial(
    seed: int, subjects: int, effect: float, endpoint: str, drop: float, rng: np.random.Generator
) -> pd.DataFrame:
    """One trial's tidy table planned from scratch (the cohort ``kneescope synth`` writes;
    months 18 has no synthetic visit code, so the design is V00, V01, V03)."""
    table = endpoint_table(spec_of(seed, subjects, effect, FULL_VISITS))
    table = table.loc[:, ["subject", "side", "arm", "klg", "visit", "months", endpoint]]
    return dropout(table, drop, rng, FULL_MONTHS)


def crn_truth(pool: pd.DataFrame, effect: float, endpoint: str, seed: int) -> float:
    """The true effect on the pool's own index knees at 24 months: each knee's future drawn
    once (``simulate_future``, noise-free) with every knee treated and once with none, from
    the same random numbers (only the rate differs); mean of treated - untreated."""
    if effect == 0:
        return 0.0
    knees = pool[index_knees(pool).to_numpy(bool)].reset_index(drop=True)
    out = []
    for arm in ("treatment", "control"):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 999]))
        future = simulate_future(
            knees.assign(arm=arm), [MONTHS[-1]], rng, treatment_effect=effect,
            measurement_noise=False,
        )  # fmt: skip
        out.append(future[f"true_{endpoint}"].to_numpy())
    return float(np.mean(out[0] - out[1]))


def summarise(rows: list[dict[str, Any]], truth: float, alpha: float) -> dict[str, Any]:
    ok = [r for r in rows if r["estimate"] is not None and math.isfinite(r["estimate"])]
    n = len(ok)
    est = np.array([r["estimate"] for r in ok])
    se = np.array([r["se"] for r in ok])
    covered = np.array([r["ci_low"] <= truth <= r["ci_high"] for r in ok])
    reject = np.array([r["p_value"] < alpha for r in ok])
    power = np.array([power_from_se(truth, r["se"], r["df"], alpha) for r in ok])

    def share(x: np.ndarray) -> tuple[float, float]:
        p = float(x.mean()) if n else math.nan
        return p, math.sqrt(p * (1 - p) / n) if n else math.nan

    cov, cov_se = share(covered)
    rej, rej_se = share(reject)
    return {
        "trials": len(rows),
        "fitted": n,
        "not_converged": sum(1 for r in ok if not r["converged"]),
        "true_effect": truth,
        "mean_estimate": float(est.mean()),
        "bias": float(est.mean() - truth),
        "sd_estimates": float(est.std(ddof=1)),
        "mean_se": float(se.mean()),
        "coverage": cov,
        "coverage_mc_se": cov_se,
        "rejection_rate": rej,
        "rejection_mc_se": rej_se,
        "estimated_power": float(power.mean()),
        "power_gap_points": 100.0 * (float(power.mean()) - rej),
        "mean_subjects_analysed": float(np.mean([r["n_analysed"] for r in ok])),
        "mean_df": float(np.mean([r["df"] for r in ok])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--subjects", type=int, default=240)
    parser.add_argument("--effects", default="0,0.3,0.6", help="comma list of treatment_effect")
    parser.add_argument("--endpoint", default="we2008_cMFTC_ThCtAB_mm")
    parser.add_argument("--primary", default="V03")
    parser.add_argument("--dropout", type=float, default=0.05, help="per follow-up visit")
    parser.add_argument("--pool-seed", type=int, default=17001)
    parser.add_argument("--pool-subjects", type=int, default=20000)
    parser.add_argument("--truth-knees", type=int, default=20000)
    parser.add_argument("--mode", choices=("pool", "full"), default="pool")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--json", default="", help="write the results here too")
    args = parser.parse_args(argv)
    effects = [float(x) for x in args.effects.split(",")]
    if args.mode == "pool":
        config = trial_config(args.endpoint, args.primary, VISITS)
    else:
        config = trial_config(args.endpoint, "V03", FULL_VISITS)
    started = time.perf_counter()
    pool = pd.DataFrame()
    if args.mode == "pool":
        table = endpoint_table(spec_of(args.pool_seed, args.pool_subjects, 0.0, ("V00",)))
        pool = table.reset_index(drop=True)
        print(
            f"pool: {args.pool_subjects} subjects (seed {args.pool_seed}) in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    settings: list[dict[str, Any]] = []
    for s, effect in enumerate(effects):
        t0 = time.perf_counter()
        truth = 0.0
        if effect > 0:
            truth_spec = spec_of(args.pool_seed + 1, 2, effect, ("V00", "V01", "V03"))
            truth = true_treatment_effect(
                truth_spec, args.endpoint, "V03", knees=args.truth_knees, select=index_knees
            )
        pool_truth = math.nan
        if args.mode == "pool":
            pool_truth = crn_truth(pool, effect, args.endpoint, args.pool_seed)
        rows: list[dict[str, Any]] = []
        for t in range(args.trials):
            rng = np.random.default_rng(np.random.SeedSequence([args.pool_seed, s, t]))
            if args.mode == "pool":
                table = pool_trial(pool, args.subjects, effect, args.endpoint, args.dropout, rng)
            else:
                seed = args.pool_seed * 100_000 + s * 10_000 + t
                table = full_trial(seed, args.subjects, effect, args.endpoint, args.dropout, rng)
            data = assemble(table, config, source=f"trial {t}")
            result = analyse_endpoint(data, args.endpoint, config)
            main_row = result.primary(config.analysis.primary_visit or "V03")
            rows.append(
                {
                    "trial": t,
                    "estimate": main_row["estimate"] if main_row else None,
                    "se": main_row["se"] if main_row else None,
                    "df": main_row["df"] if main_row else None,
                    "ci_low": main_row["ci_low"] if main_row else None,
                    "ci_high": main_row["ci_high"] if main_row else None,
                    "p_value": main_row["p_value"] if main_row else None,
                    "converged": bool(result.mmrm and result.mmrm.converged),
                    "n_analysed": sum(result.subjects.values()),
                }
            )
        summary = summarise(rows, truth, args.alpha)
        summary.update(
            {
                "treatment_effect": effect,
                "seconds": time.perf_counter() - t0,
                "mode": args.mode,
                "pool_true_effect": pool_truth,
                "coverage_of_pool_truth": float(
                    np.mean([r["ci_low"] <= pool_truth <= r["ci_high"] for r in rows])
                )
                if math.isfinite(pool_truth)
                else None,
            }
        )
        summary["per_trial"] = rows
        settings.append(summary)
        brief = {k: v for k, v in summary.items() if k != "per_trial"}
        print(f"setting {effect}: {json.dumps(brief)}", file=sys.stderr)
    print(
        f"\n{args.trials} trials per setting, {args.subjects} subjects, {args.mode} mode, "
        f"endpoint {args.endpoint} at {args.primary}, dropout {args.dropout:.0%} per "
        f"follow-up visit, pool seed {args.pool_seed}\n"
    )
    print(
        "| treatment_effect | true effect (mm) | mean estimate | SD est / mean SE | "
        "coverage (MC SE) | rejection (MC SE) | estimated power | gap (points) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in settings:
        print(
            f"| {r['treatment_effect']:g} | {r['true_effect']:.4f} | {r['mean_estimate']:.4f} | "
            f"{r['sd_estimates']:.4f} / {r['mean_se']:.4f} | {r['coverage']:.3f} "
            f"({r['coverage_mc_se']:.3f}) | {r['rejection_rate']:.3f} "
            f"({r['rejection_mc_se']:.3f}) | {r['estimated_power']:.3f} | "
            f"{r['power_gap_points']:+.1f} |"
        )
    for r in settings if args.mode == "pool" else []:
        print(
            f"- effect {r['treatment_effect']:g}: truth on the pool's own knees (same random "
            f"numbers treated/untreated) {r['pool_true_effect']:.4f}, coverage of it "
            f"{r['coverage_of_pool_truth']:.3f}"
        )
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "settings": settings}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
