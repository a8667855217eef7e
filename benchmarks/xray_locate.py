"""Knee localisation on synthetic PA films against exact truth, and the bad-input reasons.

Films: :func:`kneescope.synth.knee_film_set.knee_films` (seed ``--seed``, held out: never
used while designing the locator; rotation, scale, exposure, collimation, L/R markers,
KL 0-4, 2 % implants) and :func:`~kneescope.synth.knee_film_set.bad_input_film` of each kind
(``--bad`` seeds each). Per knee: centre error (mm, film pixels x spacing), side, joint-line
angle error (deg, against the plateau's truth rotation), implant flag; per bad film: the
reasons given.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/xray_locate.py \\
        [--films 60] [--seed 501] [--bad 10]

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from kneescope.synth.knee_film_set import BAD_INPUTS, bad_input_film, knee_films
from kneescope.xray.locate import IMPLANT, locate_knees


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--films", type=int, default=60)
    parser.add_argument("--seed", type=int, default=501)
    parser.add_argument("--bad", type=int, default=10)
    args = parser.parse_args()
    errors, angle_errors, seconds = [], [], []
    missed = wrong_side = 0
    implant_tp = implant_fn = implant_fp = gradable_flagged = 0
    for film in knee_films(args.films, args.seed):
        start = time.process_time()
        located = locate_knees(film.image)
        seconds.append(time.process_time() - start)
        for truth in film.knees:
            knee = located.knee(truth.side)
            if knee.centre_rc is None:
                missed += 1
                continue
            d = np.subtract(knee.centre_rc, truth.centre_rc) * truth.pixel_mm
            errors.append(float(np.hypot(*d)))
            if knee.side != truth.side:
                wrong_side += 1
            sign = -1.0 if truth.side == "right" else 1.0
            angle_errors.append(abs((knee.joint_angle_deg or 0.0) - sign * truth.rotation_deg))
            flagged = knee.reason == IMPLANT
            if truth.implant:
                implant_tp += flagged
                implant_fn += not flagged
            else:
                implant_fp += flagged
                gradable_flagged += knee.reason is not None
    e = np.asarray(errors)
    a = np.asarray(angle_errors)
    print(f"## Localisation, {args.films} held-out films (seed {args.seed}), {e.size} knees\n")
    print(
        "| knees | missed | wrong side | centre error mean mm | p95 | max | angle error mean deg"
        " | max | s/film (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {e.size + missed} | {missed} | {wrong_side} | {e.mean():.2f} | "
        f"{np.percentile(e, 95):.2f} | {e.max():.2f} | {a.mean():.2f} | {a.max():.2f} | "
        f"{np.mean(seconds):.3f} |"
    )
    print(
        f"\nImplants: {implant_tp} flagged of {implant_tp + implant_fn}; knees without one "
        f"flagged as implant: {implant_fp}; other knees without a reason expected but given "
        f"one: {gradable_flagged - implant_fp}\n"
    )
    print(f"## Bad-input films ({args.bad} seeds each): reasons given\n")
    print("| kind | film truth | reasons (right knee / left knee) | films |")
    print("|---|---|---|---|")
    for kind in BAD_INPUTS:
        counts: Counter[tuple[str, str]] = Counter()
        for seed in range(args.bad):
            film = bad_input_film(kind, seed)
            located = locate_knees(film.image)
            truth = f"{film.film.view} " + ",".join(
                f"{t.side}{'+implant' if t.implant else ''}" for t in film.knees
            )
            reasons = " / ".join(k.reason or "gradable" for k in located)
            counts[(truth, reasons)] += 1
        for (truth, reasons), n in sorted(counts.items()):
            print(f"| {kind} | {truth} | {reasons} | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
