"""Full-leg cascade on held-out synthetic films: landmark errors, HKA error, peak memory.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/full_leg_hka.py \
        [--films 30] [--seed 910000] [--coarse FILE --fine FILE] [--memory] [--json OUT]

Accuracy: ``--films`` films from ``kneescope.synth.full_leg.full_leg_films`` with a seed
never used in training or development (the training script uses 7100 and 7101), all four
film formats, both legs' HKA uniform in 170-190 degrees. Per landmark (femoral head centre,
knee centre, ankle centre) the mean radial error in mm (film mm: pixel index x spacing),
then the HKA absolute error: mean over legs (MAE) and the worst leg; legs the cascade
refuses (a ``reason``) are counted and left out of the errors.

Memory (``--memory``): films of 3600 x 1200 at 0.3 mm, 4000 x 1000 at 0.36 mm and 7200 x
2400 at 0.15 mm (twice the first per side, four times its pixels) are written as DICOM;
each is measured in a fresh process (read the DICOM, both models loaded, the cascade) that
reports its peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kneescope.capabilities.landmarks.full_leg import measure_full_leg
from kneescope.synth.full_leg import full_leg_films, render_full_leg_film

MEMORY_FILMS = ((3600, 1200, 0.3), (4000, 1000, 0.36), (7200, 2400, 0.15))


def accuracy(n: int, seed: int, coarse: str | None, fine: str | None) -> dict[str, Any]:
    errors: dict[str, list[float]] = {"hip": [], "knee": [], "ankle": []}
    hka_err: list[float] = []
    worst: dict[str, Any] = {}
    refused = 0
    seconds = 0.0
    for f in full_leg_films(n, seed):
        t0 = time.perf_counter()
        legs = measure_full_leg(f.film, coarse=coarse, fine=fine)
        seconds += time.perf_counter() - t0
        for truth, found in zip(f.legs, legs, strict=True):
            if found.reason is not None or found.hka_deg is None:
                refused += 1
                continue
            marks = truth.landmarks_mm()
            for name in errors:
                got = getattr(found, f"{name}_mm")
                errors[name].append(float(np.hypot(*np.subtract(got, marks[name]))))
            err = abs(found.hka_deg - truth.hka_deg)
            hka_err.append(err)
            if err >= worst.get("error_deg", -1.0):
                worst = {
                    "error_deg": err,
                    "truth_deg": truth.hka_deg,
                    "found_deg": found.hka_deg,
                    "side": truth.side,
                    "film_seed": f.seed,
                    "film": f"{f.film.shape[0]}x{f.film.shape[1]} at {f.pixel_mm} mm",
                }
    all_err = [e for v in errors.values() for e in v]

    def stat(values: list[float], how: Any) -> float:
        return float(how(values)) if values else float("nan")

    return {
        "films": n,
        "legs": 2 * n,
        "legs_refused": refused,
        "landmark_mean_error_mm": {k: stat(v, np.mean) for k, v in errors.items()},
        "landmark_max_error_mm": {k: stat(v, np.max) for k, v in errors.items()},
        "landmark_mean_error_mm_all": stat(all_err, np.mean),
        "hka_mae_deg": stat(hka_err, np.mean),
        "hka_worst_deg": stat(hka_err, np.max),
        "hka_worst_leg": worst,
        "seconds_per_film": seconds / n,
    }


def _child(path: str, coarse: str | None, fine: str | None) -> None:
    from kneescope.io import read_volume

    torch.set_num_threads(1)
    film = read_volume(Path(path))
    legs = measure_full_leg(film, coarse=coarse, fine=fine)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss_bytes": peak, "hka": [leg.hka_deg for leg in legs]}))


def memory(coarse: str | None, fine: str | None) -> list[dict[str, Any]]:
    from kneescope.io import write_dicom_radiograph
    from kneescope.io.dicom_write import DicomWriteMeta

    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows, cols, px in MEMORY_FILMS:
            legs = {"right": (176.0, 1.0), "left": (183.0, 1.0)}
            film, truths, _ = render_full_leg_film(legs, seed=5, shape=(rows, cols), pixel_mm=px)
            path = Path(tmp) / f"film_{rows}x{cols}.dcm"
            meta = DicomWriteMeta(patient_id="BENCH", study_date="20260101", uid_seed=path.name)
            write_dicom_radiograph(film, path, meta=meta)
            del film
            cmd = [sys.executable, __file__, "--child", str(path)]
            cmd += ["--coarse", coarse] if coarse else []
            cmd += ["--fine", fine] if fine else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            found = json.loads(out.stdout.strip().splitlines()[-1])
            rows_out.append(
                {
                    "film": f"{rows}x{cols} at {px} mm",
                    "pixels": rows * cols,
                    "dicom_bytes": path.stat().st_size,
                    "peak_rss_mib": found["peak_rss_bytes"] / 2**20,
                    "hka_found": found["hka"],
                    "hka_truth": [t.hka_deg for t in truths],
                }
            )
            print(json.dumps(rows_out[-1]), flush=True)
    return rows_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=30, help="held-out films (0: none)")
    parser.add_argument("--seed", type=int, default=910000)
    parser.add_argument("--coarse", default=None, help="coarse model file (default: shipped)")
    parser.add_argument("--fine", default=None, help="fine model file (default: shipped)")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.coarse, args.fine)
        return 0
    torch.set_num_threads(1)
    report: dict[str, Any] = {}
    if args.films > 0:
        report["accuracy"] = accuracy(args.films, args.seed, args.coarse, args.fine)
        print(json.dumps(report["accuracy"], indent=1), flush=True)
    if args.memory:
        report["memory"] = memory(args.coarse, args.fine)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
