"""Time per knee of all biomarkers (measure_knee) on a full-size 160 x 384 x 384 label map.

Uses a synthetic knee (kneescope.synth, OAI DESS grid) and the toy knee
(kneescope.biomarkers.knee_phantom) at the same grid; rendering is not timed. Runs on one
core (OMP/BLAS threads pinned to 1 before numpy loads).

    .venv/bin/python benchmarks/biomarkers_timing.py [--repeats 3] [--no-synth]

Prints one line per knee: best and median wall-clock seconds over the repeats, the median
CPU seconds of the process (what one core spends on it whatever else runs), and the
machine's load average while it ran (the wall-clock time of one pinned core depends on what
else shares that core). Target: < 5 s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from kneescope.biomarkers import measure_knee  # noqa: E402
from kneescope.biomarkers.knee_phantom import (  # noqa: E402
    OBLIQUE_DEG,
    render_toy_knee,
    rotation_from_euler_deg,
)
from kneescope.core import Volume  # noqa: E402


def _time(name: str, labels: Volume, repeats: int) -> None:
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        measure_knee(labels)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"{name}: shape {labels.shape}, best {min(times):.2f} s, "
        f"median {statistics.median(times):.2f} s per knee (maps included); CPU time "
        f"median {statistics.median(cpu):.2f} s; "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) "
        f"on {os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-synth", action="store_true", help="toy knee only")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    toy = render_toy_knee(rotation=rotation_from_euler_deg(*OBLIQUE_DEG))
    _time("toy knee", toy.labels, args.repeats)
    if not args.no_synth:
        from kneescope.synth.knee import render_knee
        from kneescope.synth.params import FULL, sample_knee_params

        for seed, klg in ((0, 2), (1, 4)):
            sample = render_knee(sample_knee_params(np.random.default_rng(seed), klg=klg), FULL)
            _time(f"synthetic knee seed {seed} KLG {klg}", sample.labels, args.repeats)


if __name__ == "__main__":
    main()
