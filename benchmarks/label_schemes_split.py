"""OAI-ZIB's combined tibial cartilage split back into plates, on synthetic knees.

Renders synthetic knees (kneescope.synth) on the full OAI DESS grid (KLG 0-4, right and left,
oblique slice stacks and knees rotated in the scanner), converts each label map to the OAI-ZIB
scheme (1 femur, 2 femoral cartilage, 3 tibia, 4 tibial cartilage; patella and menisci
dropped), splits the tibial cartilage by anatomy
(:func:`kneescope.biomarkers.label_schemes.split_tibial_cartilage`) and prints, per knee, the
voxels put in the wrong plate (against the generator's own medial/lateral labels), the gap
ratio, the angle between the cartilage's medial-lateral axis and the header's left-right axis,
the split's time (the whole conversion of the map), and the largest relative difference
between the biomarkers measured from the OAI-ZIB map (``measure --labels oai-zib``) and from the
kneescope labels of the same knee, over every value of a structure OAI-ZIB labels (those of
the patella and menisci must be NaN there, and are checked to be).

    .venv/bin/python benchmarks/label_schemes_split.py [--knees 6] [--cache DIR]

``--cache DIR`` keeps the rendered label maps (``.npz``) for reruns.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

# seed, KLG, side, slice-stack obliquity (deg), rotation in the scanner about S and A (deg)
CASES = (
    (0, 0, "right", (0.0, 0.0, 0.0), 0.0, 0.0),
    (1, 4, "left", (8.0, -8.0, 8.0), 30.0, 8.0),
    (2, 1, "right", (-8.0, 8.0, -8.0), -25.0, -6.0),
    (3, 3, "left", (5.0, 5.0, -5.0), 15.0, 0.0),
    (4, 2, "left", (0.0, 0.0, 0.0), -35.0, 10.0),
    (5, 4, "right", (6.0, -4.0, 2.0), 40.0, -10.0),
)
TO_OAI_ZIB = np.array([0, 1, 2, 3, 4, 4, 0, 0, 0, 0], dtype=np.uint8)
DROPPED = frozenset({"patella", "patellar_cartilage", "medial_meniscus", "lateral_meniscus"})


def _rotate(
    affine: np.ndarray, shape: tuple[int, ...], about_s: float, about_a: float
) -> np.ndarray:
    s, a = np.deg2rad(about_s), np.deg2rad(about_a)
    rs = np.array([[np.cos(s), -np.sin(s), 0], [np.sin(s), np.cos(s), 0], [0, 0, 1]])
    ra = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rot = rs @ ra
    out = affine.copy()
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + affine[:3, 3]
    out[:3, :3] = rot @ affine[:3, :3]
    out[:3, 3] = centre + rot @ (affine[:3, 3] - centre)
    return out


def main() -> None:
    from kneescope.biomarkers import measure_knee
    from kneescope.biomarkers.label_schemes import measure_labelled, to_kneescope_labels
    from kneescope.biomarkers.qc import value_structures
    from kneescope.core import Volume
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import FULL, sample_knee_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knees", type=int, default=len(CASES), help=f"<= {len(CASES)}")
    parser.add_argument("--cache", type=Path, default=None, help="folder for rendered knees")
    args = parser.parse_args()
    print(
        "| knee | KLG | side | obliquity deg | rotation S/A deg | tibial cartilage voxels "
        "| wrong plate | gap ratio | ML axis vs header x deg | split s | values compared "
        "| max rel diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for seed, klg, side, oblique, about_s, about_a in CASES[: args.knees]:
        pose = "_".join(f"{v:g}" for v in oblique)
        cached = args.cache / f"full_{seed}_{klg}_{side}_{pose}.npz" if args.cache else None
        if cached is not None and cached.exists():
            data = np.load(cached)
            arr, affine = data["labels"], data["affine"]
        else:
            params = sample_knee_params(np.random.default_rng(seed), klg=klg)
            params = params.model_copy(update={"side": side, "obliquity_deg": oblique})
            sample = render_knee(params, FULL)
            arr, affine = sample.labels.array, sample.labels.affine_ras
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(cached, labels=arr, affine=affine)
        posed = _rotate(affine, arr.shape, about_s, about_a)
        labels = Volume(arr, posed, {"side": side})
        zib = Volume(TO_OAI_ZIB[arr], posed, {"side": side})
        start = time.perf_counter()
        conv = to_kneescope_labels(zib, "oai-zib")
        split_s = time.perf_counter() - start
        assert conv.split is not None
        wrong = int(
            np.count_nonzero((conv.labels.array == 4) & (arr == 5))
            + np.count_nonzero((conv.labels.array == 5) & (arr == 4))
        )
        ref = measure_knee(labels, with_maps=False).values
        got = measure_labelled(zib, "oai-zib", with_maps=False).values
        worst, compared = 0.0, 0
        for key, value in ref.items():
            if value_structures(key) & DROPPED:
                assert math.isnan(got[key]), key  # not labelled in OAI-ZIB: NaN, flagged
            elif math.isfinite(value):
                rel = abs(got[key] - value) / max(abs(value), 1e-12)
                worst = max(worst, rel if math.isfinite(rel) else math.inf)
                compared += 1
        print(
            f"| {seed} | {klg} | {side} | {oblique} | {about_s:g}/{about_a:g} "
            f"| {int(((arr == 4) | (arr == 5)).sum())} | {wrong} | {conv.split.gap_ratio:.3f} "
            f"| {conv.split.axis_to_world_x_deg:.1f} | {split_s:.2f} | {compared} "
            f"| {worst:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
