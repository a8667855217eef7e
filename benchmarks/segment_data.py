"""Synthetic knee data sets for the segmentation benchmarks (shared by the other scripts).

Training knees and held-out knees differ in seed, noise level and scan orientation
(obliquity and field-of-view offset): training draws the synth module's default scan
settings; held-out knees use other seeds, noise sigma 0.025-0.07 (training: 0.03-0.06) and
obliquity up to 12 degrees (training: up to 8). Each knee is written as a NIfTI pair
``images/<name>.nii`` + ``labels/<name>.nii`` and reused when it exists; ``sides.csv``
(columns name,side) records each knee's side (even indices right, odd left).

Run alone to make data: .venv/bin/python benchmarks/segment_data.py --out DIR --train 16 --test 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kneescope.io import write_nifti
from kneescope.synth.knee import render_knee
from kneescope.synth.params import FULL, KneeParams, SizeSpec, sample_knee_params


def knee_side(index: int) -> str:
    """The side of knee ``index`` (both sets alternate right, left, ...)."""
    return "right" if index % 2 == 0 else "left"


def knee_params(index: int, held_out: bool) -> KneeParams:
    """Parameters of knee ``index`` of the training (or held-out) set."""
    seed = (100_000 if held_out else 0) + index
    rng = np.random.default_rng(seed)
    side = knee_side(index)
    klg = int(rng.integers(0, 5))
    params = sample_knee_params(rng, side=side, klg=klg)
    return held_out_variant(params, rng) if held_out else params


def held_out_variant(params: KneeParams, rng: np.random.Generator) -> KneeParams:
    """``params`` with a held-out knee's scan: another noise level, an oblique orientation (up
    to 12 degrees) and a field-of-view offset (up to 8 mm), drawn from ``rng``."""
    extra = {
        "noise_sigma": float(rng.uniform(0.025, 0.07)),
        "obliquity_deg": tuple(float(v) for v in rng.uniform(-12.0, 12.0, size=3)),
        "offset_mm": tuple(float(v) for v in rng.uniform(-8.0, 8.0, size=3)),
        "intensity_seed": int(rng.integers(0, 2**31 - 1)),
    }
    return KneeParams.model_validate({**params.model_dump(), **extra})


def make_set(
    out: Path, count: int, *, held_out: bool, size: SizeSpec = FULL, verbose: bool = True
) -> list[str]:
    """Render ``count`` knees into ``out/images`` and ``out/labels`` (skipping existing ones)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    names = []
    for n in range(count):
        name = f"{'test' if held_out else 'train'}{n:03d}"
        names.append(name)
        img_path, lab_path = out / "images" / f"{name}.nii", out / "labels" / f"{name}.nii"
        if img_path.exists() and lab_path.exists():
            continue
        t0 = time.perf_counter()
        sample = render_knee(knee_params(n, held_out), size)
        write_nifti(sample.labels, lab_path)
        write_nifti(sample.image, img_path)
        if verbose:
            print(f"{name}: {size.shape} in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = "".join(f"{name},{knee_side(n)}\n" for n, name in enumerate(names))
    (out / "sides.csv").write_text("name,side\n" + rows)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--test", type=int, default=4)
    args = parser.parse_args()
    make_set(args.out / "train", args.train, held_out=False)
    make_set(args.out / "test", args.test, held_out=True)


if __name__ == "__main__":
    main()
