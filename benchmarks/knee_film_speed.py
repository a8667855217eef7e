"""Synthetic knee films: render time per bilateral film on one core, and the truth's sizes.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/knee_film_speed.py \
        [--films 40] [--seed 4242] [--json OUT]

Renders ``--films`` films with :func:`kneescope.synth.knee_film_set.knee_films` (uniform KL
weights, the default 2 % implants, 0.2 mm) and reports the CPU time per film (process time,
one thread: the whole film, truth included) and, per KL grade, the mean (sd) medial and
lateral mJSW of the knees drawn (film mm), with the number of knees and implants.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kneescope.synth.knee_film_set import knee_films


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--films", type=int, default=40)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cpu: list[float] = []
    wall: list[float] = []
    by_kl: dict[int, list[tuple[float, float]]] = {}
    implants = 0
    films = knee_films(args.films, args.seed)
    while True:
        t0, w0 = time.process_time(), time.perf_counter()
        film = next(films, None)
        if film is None:
            break
        cpu.append(time.process_time() - t0)
        wall.append(time.perf_counter() - w0)
        for k in film.knees:
            if k.implant:
                implants += 1
            else:
                by_kl.setdefault(k.klg, []).append((k.mjsw_medial_mm, k.mjsw_lateral_mm))
    report = {
        "films": args.films,
        "seed": args.seed,
        "cpu_s_per_film": {
            "mean": float(np.mean(cpu)),
            "median": float(np.median(cpu)),
            "max": float(np.max(cpu)),
        },
        "wall_s_per_film_mean": float(np.mean(wall)),
        "implants": implants,
        "mjsw_by_kl": {
            str(kl): {
                "knees": len(v),
                "medial_mean": float(np.mean([m for m, _ in v])),
                "medial_sd": float(np.std([m for m, _ in v])),
                "lateral_mean": float(np.mean([lat for _, lat in v])),
                "lateral_sd": float(np.std([lat for _, lat in v])),
            }
            for kl, v in sorted(by_kl.items())
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
