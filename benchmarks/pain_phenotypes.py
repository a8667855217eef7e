"""Pain association and knee phenotypes on the generator's fast endpoint table, against its
truth.

Pain: WOMAC knee pain (:func:`kneescope.synth.pain.womac_pain`: subject propensity + 1.2 KLG
+ 4 effusion + 0.1 (BMI - 27) + noise, rounded, clipped to 0-20) regressed on KL grade,
effusion and BMI with a random intercept per subject, by the interval-censored ML model and
by statsmodels MixedLM (:mod:`kneescope.capabilities.pain.association`):

* one large cohort (``--subjects``, seed ``--seed``): each coefficient with its 95 % CI, and
  whether the generator's value lies inside;
* ``--replicates`` cohorts the size of the seed study (``--replicate-subjects``, seeds
  ``--seed + 1 ..``): coverage of the 95 % CIs and the mean bias of each model (what the
  0-20 floor does to the linear fit).

Phenotypes: each knee's baseline value and slope (per year) of the central medial and the
lateral femorotibial ThCtAB (``--pheno-visits``, with measurement noise), a Gaussian mixture
with k by BIC, bootstrap ARI stability over subjects (``--resamples``), and the agreement
(ARI) of the phenotypes with the generator's known classes: ``progression`` (non-progressor /
typical / fast), progression class (non-progressors "stable" vs medial vs lateral
progressors), both crossed, medial predominance, baseline KL grade; also within KL >= 2
knees; and the same mixture design on the noise-free twins (``true_*``) of the endpoints,
for what measurement noise costs.

Validation (designs chosen on it)::

    nice .venv/bin/python benchmarks/pain_phenotypes.py --seed 17001 --json /work/data17/E/val.json

Test (run once)::

    nice .venv/bin/python benchmarks/pain_phenotypes.py --seed 17101 --replicates 80 \
        --json /work/data17/E/test.json

(replicate cohorts: seeds 17102-17181, inside the locked test range 17101-17199; ~6 min on
2 shared cores.)

Prints Markdown; ``--json`` also writes every number.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kneescope.capabilities.pain.association import pain_association
from kneescope.capabilities.pain.config import PhenotypeConfig
from kneescope.capabilities.pain.phenotypes import find_phenotypes, knee_trajectories
from kneescope.io.atomic import atomic_write_text
from kneescope.stats.clusters import agreement, select_mixture
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.endpoints import endpoint_table
from kneescope.synth.pain import PAIN_PER_BMI, PAIN_PER_EFFUSION, PAIN_PER_KLG
from kneescope.synth.visits import parse_visits

TRUTH = {"klg": PAIN_PER_KLG, "effusion": PAIN_PER_EFFUSION, "bmi": PAIN_PER_BMI}
PREDICTORS = list(TRUTH)
FEATURES = ("we2008_cMFTC_ThCtAB_mm", "we2008_LFTC_ThCtAB_mm")


def pain_single(table: pd.DataFrame) -> dict[str, Any]:
    """Both models' coefficients with CIs on one cohort."""
    found = pain_association(table, PREDICTORS, method="both")
    out: dict[str, Any] = {
        "knee_visits": found.knee_visits,
        "subjects": found.subjects,
        "share_at_floor": found.at_floor,
        "share_at_ceiling": found.at_ceiling,
    }
    for fit in found.fits:
        out[fit.method] = {
            name: dict(
                zip(("estimate", "ci_low", "ci_high"), fit.coefficient(name), strict=True),
                truth=value,
                covered=fit.coefficient(name)[1] <= value <= fit.coefficient(name)[2],
            )
            for name, value in TRUTH.items()
        }
        out[fit.method]["residual_sd"] = fit.sigma
        out[fit.method]["subject_sd"] = fit.tau
    return out


def pain_replicates(seeds: list[int], subjects: int, visits: tuple[str, ...]) -> dict[str, Any]:
    """Coverage and bias of both models over cohorts of the seed study's size."""
    est: dict[str, dict[str, list[float]]] = {}
    cov: dict[str, dict[str, list[bool]]] = {}
    floor = []
    for seed in seeds:
        table = endpoint_table(CohortSpec(subjects=subjects, visits=visits, seed=seed))
        found = pain_association(table, PREDICTORS, method="both")
        floor.append(found.at_floor)
        for fit in found.fits:
            for name, value in TRUTH.items():
                e, lo, hi = fit.coefficient(name)
                est.setdefault(fit.method, {}).setdefault(name, []).append(e)
                cov.setdefault(fit.method, {}).setdefault(name, []).append(lo <= value <= hi)
    return {
        "replicates": len(seeds),
        "seeds": [seeds[0], seeds[-1]],
        "subjects": subjects,
        "visits": list(visits),
        "share_at_floor_mean": float(np.mean(floor)),
        **{
            method: {
                name: {
                    "truth": TRUTH[name],
                    "mean_estimate": float(np.mean(values)),
                    "bias": float(np.mean(values) - TRUTH[name]),
                    "bias_se": float(np.std(values, ddof=1) / np.sqrt(len(values))),
                    "empirical_sd": float(np.std(values, ddof=1)),
                    "coverage": float(np.mean(cov[method][name])),
                }
                for name, values in names.items()
            }
            for method, names in est.items()
        },
    }


def phenotypes(table: pd.DataFrame, resamples: int, seed: int) -> dict[str, Any]:
    """Phenotypes of the cohort's knees and their agreement with the generator's classes."""
    knees = knee_trajectories(table, FEATURES)
    first = table.loc[table["months"] == 0]
    base = first.loc[:, ["subject", "side", "progression", "medial_predominant"]].assign(
        baseline_klg=first["klg"].to_numpy(), subject=first["subject"].astype(str)
    )
    knees = knees.merge(base, on=["subject", "side"], how="left")
    compartment = np.where(knees["medial_predominant"], "medial", "lateral")
    # the generator's known classes: progression (non-progressor / typical / fast), and
    # progression by compartment (non-progressors have none: "stable")
    knees["progression_class"] = np.where(
        knees["progression"] == "non-progressor", "stable", compartment
    )
    knees["progression_by_compartment"] = np.where(
        knees["progression"] == "non-progressor",
        "stable",
        np.char.add(np.char.add(compartment.astype(str), "-"), knees["progression"].astype(str)),
    )
    features = [c for c in knees.columns if c.endswith(("_baseline", "_slope_per_year"))]
    config = PhenotypeConfig(features=FEATURES, resamples=resamples, seed=seed)
    found = find_phenotypes(
        knees,
        features,
        config,
        {
            "progression": "progression",
            "progression_class": "progression_class",
            "progression_by_compartment": "progression_by_compartment",
            "medial_predominant": "medial_predominant",
            "baseline_klg": "baseline_klg",
        },
    )
    k = found.knees
    oa = k["baseline_klg"] >= 2
    summary = found.summary()
    summary["agreement_ari_kl2plus"] = {
        c: agreement(k.loc[oa, "phenotype"].to_numpy(), k.loc[oa, c].astype(str).to_numpy())
        for c in ("progression", "progression_class", "medial_predominant")
    }
    # the same design on the noise-free endpoints: what measurement noise costs
    true_table = table.drop(columns=list(FEATURES)).rename(
        columns={f"true_{c}": c for c in FEATURES}
    )
    true_knees = knee_trajectories(true_table, FEATURES).merge(
        k.loc[:, ["subject", "side", "phenotype", "progression", "progression_class"]],
        on=["subject", "side"],
    )
    noise_free = select_mixture(
        true_knees.loc[:, features].to_numpy(np.float64), config.k_range, seed=seed
    )
    summary["noise_free"] = {
        "k": noise_free.k,
        "ari_with_measured_phenotypes": agreement(
            noise_free.labels, true_knees["phenotype"].to_numpy()
        ),
        "ari_with_progression": agreement(noise_free.labels, true_knees["progression"].to_numpy()),
        "ari_with_progression_class": agreement(
            noise_free.labels, true_knees["progression_class"].to_numpy()
        ),
    }
    summary["crosstab_progression_by_compartment"] = {
        str(p): {str(c): int(n) for c, n in row.items()}
        for p, row in pd.crosstab(k["phenotype"], k["progression_by_compartment"]).iterrows()
    }
    summary["means"] = found.means_rows()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=17001)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--visits", default="V00,V01,V03,V05")
    parser.add_argument("--replicates", type=int, default=40)
    parser.add_argument("--replicate-subjects", type=int, default=240)
    parser.add_argument("--pheno-visits", default="V00,V01,V03,V05,V06")
    parser.add_argument("--resamples", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    visits = parse_visits(args.visits)
    t0 = time.perf_counter()
    table = endpoint_table(
        CohortSpec(subjects=args.subjects, visits=parse_visits(args.pheno_visits), seed=args.seed)
    )
    single = pain_single(table.loc[table["visit"].isin(visits)])
    seeds = list(range(args.seed + 1, args.seed + 1 + args.replicates))
    reps = pain_replicates(seeds, args.replicate_subjects, visits) if seeds else {}
    pheno = phenotypes(table, args.resamples, args.seed)
    report = {
        "seed": args.seed,
        "subjects": args.subjects,
        "visits": list(visits),
        "pain_single": single,
        "pain_replicates": reps,
        "phenotypes": pheno,
        "seconds": time.perf_counter() - t0,
    }
    print(f"# pain and phenotypes, seed {args.seed}\n")
    print(f"## pain, one cohort of {args.subjects} subjects x {len(visits)} visits")
    print(f"floor share {single['share_at_floor']:.3f}\n")
    print("| model | term | truth | estimate | 95 % CI | covered |")
    print("|---|---|---|---|---|---|")
    for method in ("censored-ml", "mixedlm-reml"):
        for name in TRUTH:
            c = single[method][name]
            print(
                f"| {method} | {name} | {c['truth']} | {c['estimate']:.3f} | "
                f"[{c['ci_low']:.3f}, {c['ci_high']:.3f}] | {c['covered']} |"
            )
    if reps:
        print(
            f"\n## pain, {reps['replicates']} cohorts of {reps['subjects']} subjects "
            f"(seeds {reps['seeds'][0]}-{reps['seeds'][1]}), floor share "
            f"{reps['share_at_floor_mean']:.3f}\n"
        )
        print("| model | term | truth | mean estimate | bias (SE) | coverage |")
        print("|---|---|---|---|---|---|")
        for method in ("censored-ml", "mixedlm-reml"):
            for name in TRUTH:
                r = reps[method][name]
                print(
                    f"| {method} | {name} | {r['truth']} | {r['mean_estimate']:.3f} | "
                    f"{r['bias']:+.3f} ({r['bias_se']:.3f}) | {r['coverage']:.3f} |"
                )
    print(f"\n## phenotypes ({len(parse_visits(args.pheno_visits))} visits)\n")
    print(
        f"k = {pheno['k']} (BIC), sizes {pheno['sizes']}, stability ARI "
        f"{pheno['stability_ari_mean']:.3f} [{pheno['stability_ari_95'][0]:.3f}, "
        f"{pheno['stability_ari_95'][1]:.3f}] over {pheno['stability_resamples']} resamples"
    )
    print(f"ARI with known classes: {json.dumps(pheno['agreement_ari'])}")
    print(f"ARI within KL >= 2: {json.dumps(pheno['agreement_ari_kl2plus'])}")
    print(f"phenotype x class: {json.dumps(pheno['crosstab_progression_by_compartment'])}")
    print(f"same design on the noise-free endpoints: {json.dumps(pheno['noise_free'])}")
    print(f"\n{report['seconds']:.0f} s")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
