"""Speed of the MMRM engine on a trial-sized analysis: subjects x visits x endpoints.

A randomised synthetic cohort (:func:`kneescope.synth.endpoints.endpoint_table`, seed
``--seed``, validation range of issue 17) gives per knee x visit the cartilage thickness and
joint-space-width endpoints. Each endpoint of each knee (right, left) is one analysis: change
from the first visit of ``--visits`` at every later visit, ``change ~ visit * arm + visit *
baseline + age + bmi + sex``, unstructured covariance (REML), LS-means per visit x arm and the
treatment - control difference per visit with Satterthwaite df
(:mod:`kneescope.stats.mmrm_design`). ``--missing`` of the post-baseline values are dropped
completely at random. Timed: design + fit + LS-means of all analyses (the cohort's generation
is not timed). Target (issue 17): 1,000 subjects, 5 visits, 20 endpoints in < 60 s on 2 cores.

    nice .venv/bin/python benchmarks/mmrm_speed.py --subjects 1000 \
        --visits V00,V01,V03,V05,V06,V08 --endpoints 20

Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from kneescope.stats.mmrm_design import build_design, fit_design, lsmeans
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.endpoints import ENDPOINTS, endpoint_table


def analyses(table: pd.DataFrame, n: int) -> list[tuple[str, str]]:
    """The first ``n`` (side, endpoint) pairs: every endpoint of the right knee, then the left."""
    pairs = [(side, e) for side in ("right", "left") for e in ENDPOINTS]
    if n > len(pairs):
        raise SystemExit(f"at most {len(pairs)} endpoints ({len(ENDPOINTS)} per knee)")
    return pairs[:n]


def change_frame(
    table: pd.DataFrame, side: str, endpoint: str, baseline_visit: str, rng: np.random.Generator
) -> pd.DataFrame:
    """Tidy change-from-baseline rows of one knee side and endpoint, with MCAR holes."""
    t = table[table["side"] == side]
    base = t[t["visit"] == baseline_visit].set_index("subject")[endpoint]
    d = t[t["visit"] != baseline_visit][["subject", "visit", "arm", "age", "bmi", "sex"]].copy()
    d["base"] = d["subject"].map(base).to_numpy()
    d["chg"] = t.loc[d.index, endpoint].to_numpy() - d["base"].to_numpy()
    d["sex"] = np.where(d["sex"] == 1, "male", "female")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--visits", default="V00,V01,V03,V05,V06,V08")
    ap.add_argument("--endpoints", type=int, default=20)
    ap.add_argument("--missing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=17050)
    args = ap.parse_args()
    visits = tuple(args.visits.split(","))
    spec = CohortSpec(
        subjects=args.subjects,
        visits=visits,
        seed=args.seed,
        treatment_effect=0.3,
        randomise=True,
        radiographs=False,
        full_leg=False,
        mri=False,
        findings=False,
    )
    t0 = time.perf_counter()
    table = endpoint_table(spec)
    t_gen = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    frames = []
    for side, endpoint in analyses(table, args.endpoints):
        d = change_frame(table, side, endpoint, visits[0], rng)
        frames.append((side, endpoint, d[rng.random(len(d)) >= args.missing]))

    rows = []
    t0 = time.perf_counter()
    for side, endpoint, d in frames:
        t1 = time.perf_counter()
        des = build_design(
            d,
            response="chg",
            visit="visit",
            visits=visits[1:],
            arm="arm",
            arms=("control", "treatment"),
            baseline="base",
            covariates=("age", "bmi", "sex"),
        )
        fit = fit_design(des)
        ls = lsmeans(fit, des)
        last = ls.differences.iloc[-1]
        rows.append((side, endpoint, fit.n_obs, fit.iterations, time.perf_counter() - t1, last))
    total = time.perf_counter() - t0

    print(
        f"# MMRM speed: {args.subjects} subjects, {len(visits)} visits "
        f"({len(visits) - 1} after baseline), {len(frames)} endpoints\n"
    )
    print(
        f"seed {args.seed}; {args.missing:.0%} of post-baseline values missing (MCAR); "
        f"{os.cpu_count()} CPUs; cohort generated in {t_gen:.1f} s (not timed)\n"
    )
    print("| knee | endpoint | rows | iterations | s | diff at last visit [95 % CI] (mm) |")
    print("|---|---|---|---|---|---|")
    for side, endpoint, n_obs, it, sec, last in rows:
        print(
            f"| {side} | {endpoint} | {n_obs} | {it} | {sec:.2f} | {last['estimate']:+.4f} "
            f"[{last['lower']:+.4f}, {last['upper']:+.4f}] |"
        )
    print(
        f"\n**Total (design + REML fit + LS-means, {len(frames)} endpoints): {total:.1f} s** "
        f"(target < 60 s)"
    )


if __name__ == "__main__":
    main()
