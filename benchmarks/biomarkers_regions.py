"""Wirth-Eckstein (2008) regions: every ``we2008_*`` column measured against exact truth.

Synthetic knees (kneescope.synth) are rendered on a grid (default: the OAI DESS grid
``full``, 0.7 x 0.3646 x 0.3646 mm), measured with :func:`kneescope.biomarkers.measure_knee`
from their label maps, and compared with ``KneeTruth.biomarkers`` (the same regions and
quantities on the generator's analytic bone surfaces with the imposed thickness,
:mod:`kneescope.synth.region_truth`). Errors: % of the truth for areas, thicknesses and
volumes; percentage points for dABp.

    .venv/bin/python benchmarks/biomarkers_regions.py [--knees 5] [--size full]
        [--cache DIR]

Prints Markdown tables: per quantity and region kind (plates, subregions, aggregates) the
median and worst error over knees and regions, then every column's error per knee.
``--cache DIR`` keeps rendered label maps (keyed by the knee's parameters and the grid), so
a rerun after a measurement change does not re-render.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from kneescope.biomarkers import measure_knee
from kneescope.core import we2008

CASES = [(0, 2, "right"), (1, 4, "left"), (2, 3, "right"), (3, 0, "left"), (4, 1, "right")]


def _kind(region: str) -> str:
    if region in we2008.AGGREGATES:
        return "aggregate"
    if region in ("MT", "LT", "P", "cMF", "cLF", "TrMF", "TrLF", "pMF", "pLF"):
        return "plate"
    return "subregion"


def _knee(
    seed: int, klg: int, side: str, size_name: str, cache: Path | None
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    from kneescope.synth.anatomy import KneeShape
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import sample_knee_params, size_spec
    from kneescope.synth.truth import knee_truth

    params = sample_knee_params(np.random.default_rng(seed), klg=klg).model_copy(
        update={"side": side}
    )
    size = size_spec(size_name)
    key = hashlib.sha256((params.model_dump_json() + size.model_dump_json()).encode())
    path = None if cache is None else cache / f"{size_name}_s{seed}_{key.hexdigest()[:12]}.npz"
    if path is not None and path.exists():
        z = np.load(path)
        labels, affine = z["labels"], z["affine"]
        volumes = dict(zip(z["vol_keys"].astype(int), z["vol_values"], strict=True))
        truth = knee_truth(
            KneeShape.from_params(params), volumes, 0.5 * max(size.spacing_mm)
        ).biomarkers
        return labels, affine, truth
    sample = render_knee(params, size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(sample.truth.label_volumes_mm3))
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            labels=sample.labels.array,
            affine=sample.labels.affine_ras,
            vol_keys=keys,
            vol_values=np.array([sample.truth.label_volumes_mm3[k] for k in keys]),
        )
        tmp.replace(path)
    return sample.labels.array, sample.labels.affine_ras, sample.truth.biomarkers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--knees", type=int, default=5)
    ap.add_argument("--size", default="full")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    errors: dict[str, list[float]] = {c: [] for c in we2008.all_columns()}
    names = []
    for seed, klg, side in CASES[: args.knees]:
        labels, affine, truth = _knee(seed, klg, side, args.size, args.cache)
        t0 = time.perf_counter()
        m = measure_knee((labels, affine), side, with_maps=False)  # type: ignore[arg-type]
        names.append(f"seed {seed} KLG {klg} {side} ({time.perf_counter() - t0:.1f} s)")
        for c in errors:
            a, b = m.values[c], truth[c]
            if c.endswith("_pct"):
                errors[c].append(a - b)
            else:
                errors[c].append(100.0 * (a - b) / b if b else float("nan"))
    print(f"Grid {args.size}; knees: {', '.join(names)}\n")
    print(
        "Error of the measured value against the exact truth: % of the truth "
        "(dABp: percentage points); median and worst |error| over knees and regions.\n"
    )
    print("| quantity | regions | median abs error | worst error (column, knee) |")
    print("|---|---|---|---|")
    for q in we2008.QUANTITIES:
        for kind in ("plate", "subregion", "aggregate"):
            cols = [we2008.column(r, q) for r in we2008.all_regions() if _kind(r) == kind]
            vals = np.array([errors[c] for c in cols])
            finite = np.isfinite(vals)
            if not finite.any():
                continue
            absv = np.where(finite, np.abs(vals), -1.0)
            i, j = np.unravel_index(int(np.argmax(absv)), absv.shape)
            unit = "points" if q.endswith("_pct") else "%"
            print(
                f"| {q} | {kind} ({len(cols)}) | {np.median(np.abs(vals[finite])):.2f} {unit} "
                f"| {vals[i, j]:+.2f} {unit} (`{cols[i]}`, knee {j + 1}) |"
            )
    print("\nEvery column (error per knee, knees in the order above):\n")
    print("| column | " + " | ".join(f"knee {k + 1}" for k in range(len(names))) + " |")
    print("|---|" + "---|" * len(names))
    for c, errs in errors.items():
        print(f"| `{c}` | " + " | ".join(f"{e:+.2f}" for e in errs) + " |")


if __name__ == "__main__":
    main()
