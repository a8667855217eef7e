"""Cohort statistics of `kneescope synth` plans: KLG distribution, incidence, cartilage loss.

Usage:
    .venv/bin/python benchmarks/synth_cohort_stats.py --subjects 200 --visits V00,V03,V06 \
        --treatment-effect 0.5 [--thickness]

Prints baseline KLG distribution (knees), incident radiographic OA (KLG 0-1 at baseline ->
KLG >= 2 at the last visit, per year of follow-up), KLG transitions, and per arm the mean
cartilage loss per year: from the plan's weight-bearing loss fraction, and with
``--thickness`` from the truth thickness (medial tibial plate, mean over the footprint with
denuded bone as 0, computed by kneescope.synth.truth without rendering images).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kneescope.synth.anatomy import KneeShape
from kneescope.synth.cohort import BASELINE_KLG, CohortSpec, plan_subject
from kneescope.synth.truth import plate_surface_truth
from kneescope.synth.visits import VISIT_MONTHS, parse_visits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--visits", default="V00,V03,V06")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--treatment-effect", type=float, default=0.5)
    ap.add_argument("--thickness", action="store_true")
    args = ap.parse_args()
    spec = CohortSpec(
        subjects=args.subjects,
        visits=parse_visits(args.visits),
        seed=args.seed,
        treatment_effect=args.treatment_effect,
    )
    t0 = time.perf_counter()
    plans = [plan_subject(spec, i) for i in range(spec.subjects)]
    years = VISIT_MONTHS[spec.visits[-1]] / 12.0
    knees = [(p, side) for p in plans for side in ("right", "left")]
    base = np.array([p.knees[s][0].klg for p, s in knees])
    last = np.array([p.knees[s][-1].klg for p, s in knees])
    print(f"{len(plans)} subjects, {len(knees)} knees, visits {spec.visits} ({years:g} years)")
    dist = np.bincount(base, minlength=5) / base.size
    print(
        "baseline KLG 0..4 (%):",
        " ".join(f"{100 * d:.1f}" for d in dist),
        "| target:",
        " ".join(f"{100 * d:.0f}" for d in BASELINE_KLG),
    )
    at_risk = base <= 1
    incident = at_risk & (last >= 2)
    print(
        f"incident OA: {incident.sum()}/{at_risk.sum()} at-risk knees = "
        f"{100 * incident.mean() / max(at_risk.mean(), 1e-9):.1f} % over {years:g} y "
        f"({100 * incident.sum() / max(at_risk.sum(), 1) / years:.2f} %/year)"
    )
    moved = last > base
    print(
        f"KLG increased in {100 * moved.mean():.1f} % of knees; transitions:",
        {
            f"{a}->{b}": int(((base == a) & (last == b)).sum())
            for a in range(5)
            for b in range(5)
            if a < b and ((base == a) & (last == b)).any()
        },
    )
    for arm in ("control", "treatment"):
        sel = [(p, s) for p, s in knees if p.arm == arm]
        if not sel:
            continue
        loss = (
            np.array(
                [
                    (
                        max(p.knees[s][-1].params.loss_medial, p.knees[s][-1].params.loss_lateral)
                        - max(p.knees[s][0].params.loss_medial, p.knees[s][0].params.loss_lateral)
                    )
                    for p, s in sel
                ]
            )
            / years
        )
        oa = np.array([p.knees[s][0].klg >= 2 for p, s in sel])
        line = (
            f"{arm:9s}: n={len(sel)} knees; weight-bearing loss "
            f"{100 * loss.mean():.2f} %/y (all), {100 * loss[oa].mean():.2f} %/y (KLG>=2), "
            f"{100 * loss[~oa].mean():.2f} %/y (KLG<2)"
        )
        print(line)
        if args.thickness:
            rel = []
            for p, s in sel:
                vals = []
                for state in (p.knees[s][0], p.knees[s][-1]):
                    plate = "medial_tibial" if p.medial_predominant[s] else "lateral_tibial"
                    shape = KneeShape.from_params(state.params)
                    vals.append(plate_surface_truth(plate, shape, 0.0).thickness_mean_ab_mm)
                rel.append((vals[0] - vals[1]) / vals[0] / years)
            r = np.array(rel)
            print(
                f"{'':9s}  truth thickness loss (predominant tibial plate): "
                f"{100 * r.mean():.2f} %/y (all), {100 * r[oa].mean():.2f} %/y (KLG>=2), "
                f"{100 * r[~oa].mean():.2f} %/y (KLG<2)"
            )
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
