"""Change over time measured by ``kneescope measure`` against the generator's exact change.

Knees from the synthetic cohort (:func:`kneescope.synth.cohort.plan_subject`, seed
``--seed``) whose latent OA severity progresses fastest between the first and last visit
of ``--visits`` are rendered at each visit on ``--size`` (default ``full``: the OAI DESS
grid) as the cohort renders them: the same knee, its cartilage thinned by progression, in a
new scan pose per visit. Each visit's label map is measured, and the change from baseline
of every thickness column that the truth also gives (``truth.biomarkers[name]``: the
Wirth-Eckstein ThCtAB/ThCcAB per plate and region; before that existed, the plate means
``<plate>_cartilage_thickness_mean_mm`` against ``PlateTruth.thickness_mean_mm``, the
imposed thickness over the covered bone) is compared with the truth's change, in
percentage points (target: within +-1).

    .venv/bin/python benchmarks/biomarker_change.py --knees 4 --visits V00,V03,V06 \
        --cache /work/cache14/D

Prints Markdown. Label maps are cached under ``--cache`` (see biomarker_precision.py); the
truth is recomputed from the knee's parameters with the current ``synth.truth`` code.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from biomarker_precision import cached_labels, column_group, fmt
from kneescope.biomarkers import measure_knee
from kneescope.biomarkers.change import SDC_FACTOR, shipped_precision, thickness_change_columns
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.cohort import CohortSpec, KneeVisit, plan_subject
from kneescope.synth.params import size_spec
from kneescope.synth.truth import KneeTruth, knee_truth
from kneescope.synth.visits import parse_visits


def progressing_knees(
    seed: int, visits: tuple[str, ...], knees: int, pool: int
) -> list[tuple[str, tuple[KneeVisit, ...]]]:
    """The ``knees`` knees of the first ``pool`` subjects whose severity grows most from the
    first to the last visit: [(name, visits)]."""
    spec = CohortSpec(subjects=pool, visits=visits, seed=seed, size="full")
    found = []
    for i in range(pool):
        plan = plan_subject(spec, i)
        for side, states in plan.knees.items():
            gain = states[-1].severity - states[0].severity
            found.append((gain, f"subject {i} {side}", states))
    found.sort(key=lambda t: -t[0])
    return [(name, states) for _, name, states in found[:knees]]


def truth_values(truth: KneeTruth) -> dict[str, float]:
    """Truth thickness per measure column name: ``truth.biomarkers`` where it exists, and
    the plate means (ThCcAB-like) under the plate columns' names."""
    out: dict[str, float] = {
        f"{plate}_cartilage_thickness_mean_mm": p.thickness_mean_mm
        for plate, p in truth.plates.items()
    }
    extra: Mapping[str, float] = getattr(truth, "biomarkers", {}) or {}
    out.update({k: float(v) for k, v in extra.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--knees", type=int, default=4)
    ap.add_argument("--visits", default="V00,V03,V06")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=40, help="subjects searched for progressors")
    ap.add_argument("--size", default="full")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    visits = parse_visits(args.visits)
    size = size_spec(args.size)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    precision = shipped_precision().columns
    for name, states in progressing_knees(args.seed, visits, args.knees, args.pool):
        measured, truths = [], []
        for st in states:
            tag = f"cohort{args.seed}_{name.replace(' ', '_')}_{st.visit}"
            labels, vols = cached_labels(st.params, size, args.cache, tag)
            m = measure_knee(labels, st.params.side)
            measured.append({k: float(v) for k, v in m.values.items()})
            shape = KneeShape.from_params(st.params)
            truth = knee_truth(
                shape,
                {int(k): v for k, v in vols.items()},
                visible_threshold_mm=0.5 * max(size.spacing_mm),
            )
            truths.append(truth_values(truth))
        cols = [c for c in thickness_change_columns(list(measured[0])) if c in truths[0]]
        for v in range(1, len(states)):
            for c in cols:
                b_m, x_m = measured[0][c], measured[v][c]
                b_t, x_t = truths[0][c], truths[v][c]
                pct_m = 100.0 * (x_m - b_m) / b_m if b_m else math.nan
                pct_t = 100.0 * (x_t - b_t) / b_t if b_t else math.nan
                rows.append(
                    {
                        "knee": name,
                        "klg": f"{states[0].klg}->{states[v].klg}",
                        "visit": f"{states[0].visit}->{states[v].visit}",
                        "column": c,
                        "truth_base": b_t,
                        "truth_pct": pct_t,
                        "measured_pct": pct_m,
                        "diff_pp": pct_m - pct_t,
                        # what rescan noise alone gives (95 %): SDC95 as % of the value
                        "sdc95_pct": SDC_FACTOR * precision[c].cv_pct
                        if c in precision
                        else math.nan,
                    }
                )
    knees_txt = sorted({r["knee"] for r in rows})
    print(
        f"Command: `.venv/bin/python benchmarks/biomarker_change.py --knees {args.knees} "
        f"--visits {args.visits} --seed {args.seed} --pool {args.pool} --size {args.size}`; "
        f"grid {size.shape} at {' x '.join(f'{s:.4g}' for s in size.spacing_mm)} mm; knees: "
        f"{', '.join(knees_txt)}; {time.time() - t0:.0f} s.\n"
    )
    print(
        "| group | columns x follow-ups | within +-1 pp | within the SDC95 % | max abs diff pp "
        "| median abs diff pp | max abs mean over knees pp |"
    )
    print("|---|---|---|---|---|---|---|")
    for group in ("plate", "aggregate", "subregion", "other"):
        sel = [
            r for r in rows if column_group(r["column"]) == group and math.isfinite(r["diff_pp"])
        ]
        if not sel:
            continue
        d = np.array([abs(r["diff_pp"]) for r in sel])
        noise = int(sum(abs(r["diff_pp"]) <= r["sdc95_pct"] for r in sel))
        means = []
        for key in {(r["column"], r["visit"].split("->")[1]) for r in sel}:
            diffs = [r["diff_pp"] for r in sel if (r["column"], r["visit"].split("->")[1]) == key]
            means.append(abs(float(np.mean(diffs))))
        print(
            f"| {group} | {d.size} | {int((d <= 1.0).sum())} | {noise} | {d.max():.2f} | "
            f"{float(np.median(d)):.2f} | {max(means):.2f} |"
        )
    follow_ups = list(dict.fromkeys(r["visit"].split("->")[1] for r in rows))
    print()
    print(
        "Per column: measured - truth (pp), mean over knees / worst knee, per follow-up; "
        "SDC95 % = 1.96 x sqrt(2) x the rescan CV (what pose and noise alone give, 95 %):\n"
    )
    print(
        "| column | "
        + " | ".join(f"{v} mean / worst pp" for v in follow_ups)
        + " | SDC95 % | truth change % (range) |"
    )
    print("|---|" + "---|" * len(follow_ups) + "---|---|")
    for col in dict.fromkeys(r["column"] for r in rows):
        cells = []
        for v in follow_ups:
            d = [r["diff_pp"] for r in rows if r["column"] == col and r["visit"].endswith(v)]
            worst = max(d, key=abs)
            cells.append(f"{float(np.mean(d)):+.2f} / {worst:+.2f}")
        sel = [r for r in rows if r["column"] == col]
        truth = [r["truth_pct"] for r in sel]
        print(
            f"| `{col}` | {' | '.join(cells)} | {fmt(sel[0]['sdc95_pct'])} | "
            f"{min(truth):.1f} .. {max(truth):.1f} |"
        )
    print()
    print(
        "| knee | KLG | visits | column | truth at baseline mm | truth change % | "
        "measured change % | measured - truth pp | SDC95 % |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['knee']} | {r['klg']} | {r['visit']} | `{r['column']}` | "
            f"{r['truth_base']:.3f} | {fmt(r['truth_pct'])} | {fmt(r['measured_pct'])} | "
            f"{fmt(r['diff_pp'])} | {fmt(r['sdc95_pct'])} |"
        )


if __name__ == "__main__":
    main()
