"""Variance of the synthetic cohort's cartilage change: SRMs and apparent thickening (issue 17).

Command (validation seed 17001; the locked test seed 17101 once)::

    nice .venv/bin/python benchmarks/cohort_variance.py --seed 17001 --subjects 3000
    nice .venv/bin/python benchmarks/cohort_variance.py --seed 17001 --calibrate 40

Default mode: the fast endpoint table (:func:`kneescope.synth.endpoints.endpoint_table`,
measurement noise on) of ``--subjects`` subjects at V00, V01, V03 (0, 12, 24 months), no
treatment; per baseline-KL group: n knees, mean and SD of the 2-year change (mm), SRM = mean /
SD, the share of knees with an apparent increase (change > 0) and with an increase beyond the
smallest detectable change (SDC95 = 1.96 sqrt(2) x the measurement SD), and (Buck et al. 2010's
definition) beyond the healthy KL 0 knees' 2.5th / 97.5th percentiles of change in at least one
of cMT, ccMF, MT, cMF, for the measured and
the noise-free (``true_``) endpoints; also the total femorotibial thickness (MT + LT + cMF +
cLF) of KL 2-3 knees (the FORWARD trial's endpoint and population), incident OA and KL
progression rates. ``--json`` writes everything as JSON.

``--calibrate N``: the analytic endpoint values against the generator's exact truth
(:func:`kneescope.synth.region_truth.we2008_truth` of each knee's parameters at V00 and V03,
no image rendering; ~1.5 s per knee-visit) for the first N subjects: correlation and slope
(least squares of exact on analytic) of the 2-year change per endpoint, and the RMS error of
the values.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import pandas as pd

from kneescope.synth.cohort import CohortSpec, plan_cohort
from kneescope.synth.endpoints import (
    AGGREGATES,
    MEASUREMENT_SD_MM,
    endpoint_table,
    thickness_column,
)

ENDPOINTS = ("MFTC", "cMFTC", "MT", "cMF", "LFTC")
GROUPS = {"KL>=2": (2, 4), "KL0-1": (0, 1), "KL2": (2, 2), "KL3": (3, 3), "KL4": (4, 4)}


def _measurement_sd(region: str) -> float:
    parts = AGGREGATES.get(region, (region,))
    return math.sqrt(sum(MEASUREMENT_SD_MM[p] ** 2 for p in parts))


def change_table(df: pd.DataFrame, months: int = 24) -> pd.DataFrame:
    """One row per knee: baseline KL, and the change (follow-up - baseline) of every endpoint
    and its ``true_`` twin at ``months``."""
    key = ["subject_index", "side"]
    base = df[df["months"] == 0].set_index(key)
    fu = df[df["months"] == months].set_index(key)
    cols = [c for c in df.columns if c.startswith(("we2008_", "true_we2008_"))]
    cols += ["medial_jsw_mm", "true_medial_jsw_mm"]
    out = (fu[cols] - base[cols]).add_prefix("d_")
    out["baseline_klg"] = base["baseline_klg"]
    out["klg_fu"] = fu["klg"]
    for prefix in ("", "true_"):
        plates = [thickness_column(r) for r in ("MT", "LT", "cMF", "cLF")]
        out[f"d_{prefix}total_FT"] = sum(out[f"d_{prefix}{c}"] for c in plates)
    return out.reset_index()


def summarise(ch: pd.DataFrame) -> dict[str, object]:
    """SRM and thickening shares per KL group and endpoint (measured and true)."""
    res: dict[str, object] = {}
    for group, (lo, hi) in GROUPS.items():
        sel = ch[(ch["baseline_klg"] >= lo) & (ch["baseline_klg"] <= hi)]
        g: dict[str, object] = {"n": len(sel)}
        for region in ENDPOINTS:
            sdc = 1.96 * math.sqrt(2.0) * _measurement_sd(region)
            for prefix in ("", "true_"):
                x = sel[f"d_{prefix}{thickness_column(region)}"].to_numpy()
                mean, sd = float(x.mean()), float(x.std(ddof=1))
                g[f"{prefix}{region}"] = {
                    "mean_mm": round(mean, 4),
                    "sd_mm": round(sd, 4),
                    "srm": round(mean / sd, 3) if sd > 0 else float("nan"),
                    "thickening_pct": round(100 * float((x > 0).mean()), 1),
                    "thickening_beyond_sdc_pct": round(100 * float((x > sdc).mean()), 1),
                    "thinning_beyond_sdc_pct": round(100 * float((x < -sdc).mean()), 1),
                }
        res[group] = g
    # Buck et al. 2010's definition: change beyond the healthy (KL 0) knees' 2.5th / 97.5th
    # percentiles in at least one region (here the 4 medial regions the table models)
    healthy = ch[ch["baseline_klg"] == 0]
    regions = ("cMT", "ccMF", "MT", "cMF")
    limits = {
        r: np.percentile(healthy[f"d_{thickness_column(r)}"].to_numpy(), [2.5, 97.5])
        for r in regions
    }
    for group, (lo, hi) in GROUPS.items():
        sel = ch[(ch["baseline_klg"] >= lo) & (ch["baseline_klg"] <= hi)]
        thick = np.zeros(len(sel), bool)
        thin = np.zeros(len(sel), bool)
        for r in regions:
            x = sel[f"d_{thickness_column(r)}"].to_numpy()
            thin |= x < limits[r][0]
            thick |= x > limits[r][1]
        res[f"{group} beyond healthy limits (cMT, ccMF, MT, cMF)"] = {
            "thickening_pct": round(100 * float(thick.mean()), 1),
            "thinning_pct": round(100 * float(thin.mean()), 1),
        }
    kl23 = ch[ch["baseline_klg"].between(2, 3)]
    for prefix in ("", "true_"):
        x = kl23[f"d_{prefix}total_FT"].to_numpy()
        res[f"KL2-3 {prefix}total femorotibial"] = {
            "n": len(x),
            "mean_mm": round(float(x.mean()), 4),
            "sd_mm": round(float(x.std(ddof=1)), 4),
        }
    at_risk = ch[ch["baseline_klg"] <= 1]
    res["incident_oa_pct_per_year"] = round(100 * float((at_risk["klg_fu"] >= 2).mean()) / 2, 2)
    res["kl_progression_pct_2y"] = round(100 * float((ch["klg_fu"] > ch["baseline_klg"]).mean()), 1)
    return res


def calibrate(seed: int, subjects: int) -> dict[str, object]:
    """Analytic endpoints vs exact truth (we2008_truth, bone gap) at V00 and V03."""
    from kneescope.synth.anatomy import KneeShape
    from kneescope.synth.region_truth import we2008_truth
    from kneescope.synth.truth import bone_gap

    spec = CohortSpec(subjects=subjects, visits=("V00", "V03"), seed=seed)
    plans = plan_cohort(spec)
    df = endpoint_table(spec, plans, measurement_noise=False)
    exact: dict[str, list[float]] = {}
    for plan in plans:
        for side in ("right", "left"):
            for state in plan.knees[side]:
                shape = KneeShape.from_params(state.params)
                w = we2008_truth(shape)
                for region in ("MT", "cMT", "cMF", "ccMF", "LT", "cLF", "MFTC", "cMFTC", "LFTC"):
                    col = thickness_column(region)
                    exact.setdefault(col, []).append(w[col])
                gap = bone_gap(shape)
                exact.setdefault("medial_jsw_mm", []).append(gap["medial"])
        print(f"calibrated subject {plan.index + 1}/{subjects}", file=sys.stderr, flush=True)
    out: dict[str, object] = {"knees": 2 * subjects}
    key = ["subject_index", "side"]
    for col, values in exact.items():
        d = df.assign(exact=values)
        rmse = float(np.sqrt(np.mean((d["exact"] - d[f"true_{col}"]) ** 2)))
        b = d[d["months"] == 0].set_index(key)
        f = d[d["months"] == 24].set_index(key)
        ce = (f["exact"] - b["exact"]).to_numpy()
        ca = (f[f"true_{col}"] - b[f"true_{col}"]).to_numpy()
        ca0, ce0 = ca - ca.mean(), ce - ce.mean()
        slope = float(np.dot(ca0, ce0) / np.dot(ca0, ca0))
        out[col] = {
            "value_rmse_mm": round(rmse, 4),
            "change_r": round(float(np.corrcoef(ca, ce)[0, 1]), 4),
            "change_slope": round(slope, 3),
            "change_mean_exact_mm": round(float(ce.mean()), 4),
            "change_mean_analytic_mm": round(float(ca.mean()), 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=17001)
    ap.add_argument("--subjects", type=int, default=3000)
    ap.add_argument("--calibrate", type=int, default=0, metavar="N")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.calibrate:
        result = calibrate(args.seed, args.calibrate)
    else:
        spec = CohortSpec(subjects=args.subjects, visits=("V00", "V01", "V03"), seed=args.seed)
        result = summarise(change_table(endpoint_table(spec)))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for key, value in result.items():
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            print(key, {k: v for k, v in value.items() if not isinstance(v, dict)})
            for k, v in value.items():
                if isinstance(v, dict):
                    print(f"   {k:>12}", v)
        else:
            print(key, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
