"""Render synthetic knee MRIs with their KL grade for the 3D MRI KL classifier (issue 16, A).

Each knee-visit of ``plan_subject(CohortSpec(seed=SEED, visits=VISITS), i)`` is rendered
(``synth.knee.render_knee``) on the MRI grid ``--size`` (default ``small``, 48x128x128, the
same field of view as the full 160x384x384 OAI DESS grid) and cached as one ``.npz`` per knee
under ``OUT/<seed>/``: ``image`` (uint16, as rendered, the generator's array layout),
``affine_ras`` (4x4), ``side``, ``klg``, ``severity`` (latent D), ``labels`` (uint8 label map),
``subject``, ``visit``. Existing files are kept (resumable). Usage::

    nice -n 15 .venv/bin/python benchmarks/mri_kl_data.py --seed 16001 --subjects 80 \
        --out /work/data16/A/knees
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from kneescope.synth.cohort import CohortSpec, plan_subject
from kneescope.synth.knee import render_knee
from kneescope.synth.params import size_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--subjects", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="first subject index")
    parser.add_argument("--visits", default="V00")
    parser.add_argument("--size", default="small")
    parser.add_argument("--out", type=Path, default=Path("/work/data16/A/knees"))
    args = parser.parse_args()
    visits = tuple(args.visits.split(","))
    spec = CohortSpec(subjects=args.first + args.subjects, seed=args.seed, visits=visits)
    folder = args.out / str(args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    size = size_spec(args.size)
    start = time.perf_counter()
    done = 0
    for index in range(args.first, args.first + args.subjects):
        plan = plan_subject(spec, index)
        for side in ("right", "left"):
            for state in plan.knees[side]:
                path = folder / f"{plan.participant_id}_{state.visit}_{side}.npz"
                if path.exists():
                    continue
                sample = render_knee(state.params, size)
                tmp = path.with_suffix(".tmp.npz")
                np.savez_compressed(
                    tmp,
                    image=sample.image.array,
                    affine_ras=np.asarray(sample.image.affine_ras),
                    labels=sample.labels.array,
                    side=side,
                    klg=state.klg,
                    severity=state.severity,
                    subject=plan.participant_id,
                    visit=state.visit,
                )
                tmp.replace(path)
                done += 1
        print(f"subject {index}: {done} knees in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
