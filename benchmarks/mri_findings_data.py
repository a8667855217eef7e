"""Render the knees of the MRI-findings benchmark (issue 16) once and cache them.

Knees come from a synthetic cohort's plan (``plan_subject(CohortSpec(seed=SEED), i)``,
baseline visit V00, both knees of ``--subjects`` participants). Findings are rarer than
healthy knees, so the sample is stratified by the latent severity D (sensitivity and
specificity do not depend on prevalence): ``--high`` knees with D >= 3.4 (full-thickness
defects start at D ~ 3.6), ``--mid`` with 2.3 <= D < 3.4 and ``--low`` with D < 2.3, each
drawn at random (seeded by SEED) from the planned knees of that stratum. ``--small``
adds knees with 3.4 <= D < 3.8 (where small full-thickness defects start; a threshold
chosen without them sits above the smallest true defects' measured areas), drawn after
and apart from the others.

Each knee is rendered on the DEMO grid (128x352x352, 0.85 x 0.36 x 0.36 mm: meniscal
extrusion is measurable on it) and saved as ``<out>/<pid>_<side>.npz`` (uint16 image,
uint8 truth label map, affine) plus ``<pid>_<side>.json`` (latent severity, KL grade and
the exact findings truth of :func:`kneescope.synth.findings_truth.findings_truth`).
Already-cached knees are skipped. Usage (validation seed 16002, locked test seed 16009)::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/mri_findings_data.py \\
        --seed 16002 --subjects 200 --high 10 --mid 8 --low 8 --out /work/data16/B/16002
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kneescope.synth.cohort import CohortSpec, plan_subject
from kneescope.synth.findings_truth import findings_truth
from kneescope.synth.knee import render_knee
from kneescope.synth.params import size_spec

SMALL_DEFECT_D = (3.4, 3.8)  # latent severity range where full-thickness defects start


def select(
    seed: int, subjects: int, high: int, mid: int, low: int, small: int = 0
) -> list[tuple[int, str]]:
    """(subject index, side) of the stratified sample (see the module doc).

    ``small`` adds knees with ``SMALL_DEFECT_D[0] <= D < SMALL_DEFECT_D[1]`` (where small
    full-thickness defects start) not already drawn for the other strata; it is drawn last
    from the same random stream, so the high/mid/low picks do not depend on it.
    """
    spec = CohortSpec(subjects=subjects, visits=("V00",), seed=seed)
    strata: dict[str, list[tuple[int, str]]] = {"high": [], "mid": [], "low": [], "small": []}
    for i in range(subjects):
        for side, visits in plan_subject(spec, i).knees.items():
            d = visits[0].severity
            key = "high" if d >= 3.4 else "mid" if d >= 2.3 else "low"
            strata[key].append((i, side))
            if SMALL_DEFECT_D[0] <= d < SMALL_DEFECT_D[1]:
                strata["small"].append((i, side))
    rng = np.random.default_rng([seed, 0xF1])
    out: list[tuple[int, str]] = []
    for key, n in (("high", high), ("mid", mid), ("low", low), ("small", small)):
        pool = [k for k in strata[key] if k not in out]
        if n <= 0 or not pool:
            continue
        pick = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        out.extend(pool[int(k)] for k in sorted(pick))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--high", type=int, default=10)
    ap.add_argument("--mid", type=int, default=8)
    ap.add_argument("--low", type=int, default=8)
    ap.add_argument(
        "--small",
        type=int,
        default=0,
        help="extra knees with 3.4 <= D < 3.8 (small full-thickness defects), not drawn above",
    )
    ap.add_argument("--size", default="demo")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = CohortSpec(subjects=args.subjects, visits=("V00",), seed=args.seed)
    size = size_spec(args.size)
    for index, side in select(args.seed, args.subjects, args.high, args.mid, args.low, args.small):
        plan = plan_subject(spec, index)
        key = f"{plan.participant_id}_{side}"
        if (args.out / f"{key}.json").exists():
            continue
        kv = plan.knees[side][0]
        t0 = time.process_time()
        sample = render_knee(kv.params, size)
        truth = findings_truth(kv.params, sample.truth.biomarkers)
        np.savez_compressed(
            args.out / f"{key}.npz",
            image=sample.image.array,
            labels=sample.labels.array,
            affine=sample.image.affine_ras,
        )
        doc = {
            "subject": plan.participant_id,
            "index": index,
            "side": side,
            "severity": kv.severity,
            "klg": kv.klg,
            "size": size.name,
            "truth": truth,
        }
        (args.out / f"{key}.json").write_text(json.dumps(doc, indent=1))
        print(f"{key} D={kv.severity:.2f} {time.process_time() - t0:.1f}s cpu", flush=True)


if __name__ == "__main__":
    main()
