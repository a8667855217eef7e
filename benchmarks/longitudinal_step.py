"""The ``longitudinal`` cohort step on a trial-sized synthetic cohort: its speed and what it
reports.

The generator's fast endpoint table (:func:`kneescope.synth.endpoints.endpoint_table`,
``--subjects`` x ``--visits``, seed ``--seed``: issue 17's validation range 17001-17099) is
handed to the step exactly as a run's results table would be (one row per knee-visit, with
``months`` and ``baseline_klg`` columns), through :func:`kneescope.cohort.cohort_steps.
run_cohort_steps` into a temporary run folder, files included. Timed: the step (the table's
generation is not). Then the summary's rows for ``--biomarker`` at ``--visit``: n, mean
change, SD, SRM with 95 % CI and the share of knees apparently increasing, per baseline-KL
group.

    nice .venv/bin/python benchmarks/longitudinal_step.py --subjects 1000 \
        --visits V00,V01,V03,V05,V06 --visit V03

Prints Markdown.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from kneescope.cohort.cohort_steps import run_cohort_steps
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.endpoints import endpoint_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--visits", default="V00,V01,V03,V05,V06")
    parser.add_argument("--seed", type=int, default=17001)
    parser.add_argument("--visit", default="V03", help="follow-up visit of the SRM rows")
    parser.add_argument(
        "--biomarker", action="append", help="summary rows of these (default: cMFTC and MT)"
    )
    args = parser.parse_args()
    visits = tuple(v.strip() for v in args.visits.split(","))
    spec = CohortSpec(subjects=args.subjects, visits=visits, seed=args.seed)
    table = endpoint_table(spec)
    rows = [{str(k): v for k, v in r.items()} for r in table.to_dict("records")]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "runs" / "bench"
        run_dir.mkdir(parents=True)
        start = time.perf_counter()
        run_cohort_steps([StepConfig(name="longitudinal")], rows, run_dir, None)
        seconds = time.perf_counter() - start
        folder = run_dir / "cohort" / "longitudinal"
        summary = pd.read_csv(folder / "longitudinal_summary.csv")
        changes = len(pd.read_parquet(folder / "longitudinal_changes.parquet"))
    print(
        f"## longitudinal step: {args.subjects} subjects x {len(visits)} visits "
        f"(seed {args.seed})\n"
    )
    print(f"- knee-visits: {len(table)}; change rows: {changes}; step: {seconds:.1f} s\n")
    names = args.biomarker or ["we2008_cMFTC_ThCtAB_mm", "we2008_MT_ThCtAB_mm"]
    print("| biomarker | group | n | mean change | SD | SRM [95 % CI] | increasing |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        part = summary.loc[(summary["biomarker"] == name) & (summary["visit"] == args.visit)]
        for r in part.itertuples():
            print(
                f"| {name} | {r.group} | {r.n} | {r.mean_change:.3f} | {r.sd_change:.3f} | "
                f"{r.srm:.2f} [{r.srm_ci_low:.2f}, {r.srm_ci_high:.2f}] | "
                f"{100 * r.share_increase:.0f} % |"
            )


if __name__ == "__main__":
    main()
