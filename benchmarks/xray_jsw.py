"""Joint space width on synthetic knee films against exact truth, and the JSN grade rule.

Films come from :func:`kneescope.synth.knee_film_set.knee_films` (fixed-flexion PA films with
rotation, scale, exposure, collimation, markers, osteophytes; KL grades uniform). Each knee's
standard ROI (140 mm at 0.2 mm, right frame) is cut around its TRUE knee centre with
:func:`kneescope.xray.roi.extract_roi`, so the figures measure the JSW method alone, not the
localisation. Knees with an implant are left out (not gradable).

1. Training set (film set seed ``--train-seed``): mJSW measured on every knee; the JSN
   thresholds per compartment are fitted on it (:func:`kneescope.xray.jsn.fit_thresholds`).
2. Held-out set (a different seed, never used for any design choice): MAE and bias of mJSW
   per compartment, of the JSW at the fixed locations (per compartment, over all six
   locations), of the tibial width; knees with a QC reason are counted and left out of the
   MAE; JSN accuracy and quadratic kappa with the thresholds fitted on the training set
   (and with the shipped ones, :data:`kneescope.xray.jsn.JSN_THRESHOLDS_MM`).

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/xray_jsw.py \\
        [--train-films 30] [--test-films 52] [--train-seed 151] [--test-seed 152]

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from kneescope.synth.knee_film_set import knee_films
from kneescope.xray.jsn import (
    JSN_THRESHOLDS_MM,
    fit_thresholds,
    jsn_grades,
    quadratic_kappa,
)
from kneescope.xray.jsw import measure_jsw
from kneescope.xray.roi import extract_roi


def measure_set(n_films: int, seed: int) -> list[dict[str, object]]:
    """Measure every gradable knee of ``n_films`` films of the set ``seed``."""
    rows: list[dict[str, object]] = []
    for i, film in enumerate(knee_films(n_films, seed)):
        print(f"film {i + 1}/{n_films} of set {seed}", file=sys.stderr, flush=True)
        arr = film.image.array
        for t in film.knees:
            if t.implant:
                continue
            roi = extract_roi(arr, (t.pixel_mm, t.pixel_mm), t.centre_rc, mirror=t.side == "left")
            res = measure_jsw(roi)
            rows.append({"truth": t, "res": res})
    return rows


def _mae(errors: list[float]) -> tuple[float, float, int]:
    e = np.asarray([v for v in errors if math.isfinite(v)], dtype=np.float64)
    if e.size == 0:
        return math.nan, math.nan, 0
    return float(np.mean(np.abs(e))), float(np.mean(e)), int(e.size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-films", type=int, default=30)
    ap.add_argument("--test-films", type=int, default=52)
    ap.add_argument("--train-seed", type=int, default=151)
    ap.add_argument("--test-seed", type=int, default=152)
    args = ap.parse_args()

    t0 = time.perf_counter()
    train = measure_set(args.train_films, args.train_seed)
    t1 = time.perf_counter()
    test = measure_set(args.test_films, args.test_seed)
    t2 = time.perf_counter()
    n_test = len(test)
    print(
        f"training: {len(train)} knees ({args.train_films} films, seed {args.train_seed}); "
        f"held out: {n_test} knees ({args.test_films} films, seed {args.test_seed}); "
        f"{(t2 - t0) / max(1, len(train) + n_test):.2f} s per knee (render + measure)\n"
    )

    failed = [r for r in test if r["res"].reason is not None]  # type: ignore[attr-defined]
    print(f"QC reason on {len(failed)} of {n_test} held-out knees")
    reasons: dict[str, int] = {}
    for r in failed:
        reasons[str(r["res"].reason)] = reasons.get(str(r["res"].reason), 0) + 1  # type: ignore[attr-defined]
    for why, count in sorted(reasons.items()):
        print(f"- {why}: {count}")
    print()

    print("| quantity (held out) | knees | MAE mm | bias mm | target |")
    print("|---|---|---|---|---|")
    for comp in ("medial", "lateral"):
        err = [
            getattr(r["res"], f"mjsw_{comp}_mm") - getattr(r["truth"], f"mjsw_{comp}_mm")
            for r in test
        ]
        mae, bias, n = _mae(err)
        print(f"| mJSW {comp} | {n} | {mae:.3f} | {bias:+.3f} | <= 0.25 |")
    for comp in ("medial", "lateral"):
        err = []
        for r in test:
            meas = getattr(r["res"], f"jsw_fixed_{comp}_mm")
            true = getattr(r["truth"], f"jsw_fixed_{comp}_mm")
            err += [m - t for m, t in zip(meas, true, strict=True)]
        mae, bias, n = _mae(err)
        name = f"JSW at the fixed locations, {comp} (6 per knee)"
        print(f"| {name} | {n} | {mae:.3f} | {bias:+.3f} | <= 0.3 |")
    err = [r["res"].tibial_width_mm - r["truth"].tibial_width_mm for r in test]  # type: ignore[attr-defined]
    mae, bias, n = _mae(err)
    print(f"| tibial width | {n} | {mae:.3f} | {bias:+.3f} | |")
    print()

    print("Fixed-location JSW MAE (mm) by osteophyte grade (held out):\n")
    print("| osteophyte grade | knees | medial | lateral |")
    print("|---|---|---|---|")
    for grade in range(4):
        sel = [r for r in test if r["truth"].osteophyte_grade == grade]  # type: ignore[attr-defined]
        cells = []
        for comp in ("medial", "lateral"):
            err = []
            for r in sel:
                meas = getattr(r["res"], f"jsw_fixed_{comp}_mm")
                true = getattr(r["truth"], f"jsw_fixed_{comp}_mm")
                err += [m - t for m, t in zip(meas, true, strict=True)]
            cells.append(f"{_mae(err)[0]:.3f}")
        print(f"| {grade} | {len(sel)} | {cells[0]} | {cells[1]} |")
    print()

    print("JSN grade from mJSW (thresholds fitted on the training set, scored held out):\n")
    print(
        "| compartment | thresholds mm (fitted) | accuracy | quadratic kappa | "
        "accuracy (shipped) | kappa (shipped) | knees |"
    )
    print("|---|---|---|---|---|---|---|")
    for comp in ("medial", "lateral"):
        x_tr = [getattr(r["res"], f"mjsw_{comp}_mm") for r in train]
        y_tr = [getattr(r["truth"], f"jsn_{comp}") for r in train]
        fitted = fit_thresholds(x_tr, y_tr)
        x_te = np.asarray([getattr(r["res"], f"mjsw_{comp}_mm") for r in test], dtype=np.float64)
        y_te = np.asarray([getattr(r["truth"], f"jsn_{comp}") for r in test])
        ok = np.isfinite(x_te)
        cells = []
        for th in (fitted, JSN_THRESHOLDS_MM.for_compartment(comp)):
            pred = jsn_grades(x_te[ok], th)
            acc = float(np.mean(pred == y_te[ok]))
            kappa = quadratic_kappa(y_te[ok], pred, 4)
            cells += [f"{acc:.3f}", f"{kappa:.3f}"]
        shown = ", ".join(f"{v:.2f}" for v in fitted)
        print(f"| {comp} | {shown} | {' | '.join(cells)} | {int(ok.sum())} |")
    print(f"\n(training {t1 - t0:.0f} s, held out {t2 - t1:.0f} s)")


if __name__ == "__main__":
    main()
