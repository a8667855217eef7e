"""Train the models kneescope ships: the training bank and the three training files.

Stages:

1. ``bank --out DIR [--knees 16] [--jobs 2]``: renders the development knees at the full OAI
   DESS geometry (160x384x384, 0.7 x 0.365 x 0.365 mm) into ``DIR/images``, ``DIR/labels``
   and ``DIR/tissues`` (NIfTI; the tissue map gives domain randomisation one class per
   tissue), ``DIR/sides.csv`` and ``DIR/bank.json`` (every knee's parameters). Seeds are
   ``500_000 + index`` (the development range is below 1,000,000; the locked test sets of
   ``benchmarks/model_test_sets.py`` use seeds from 9,100,000 and never meet these), KL grade
   ``index % 5``, sides alternating right/left. Existing knees are kept.
2. ``configs --bank DIR --out DIR [--minutes 68] [--threads 1]``: writes the training files
   ``knee-seg-2d.toml`` (2D U-Net, domain randomisation), ``knee-seg-3d.toml`` (3D U-Net,
   domain randomisation) and ``knee-seg-2d-nodr.toml`` (the 2D recipe on the rendered DESS
   images with today's augmentation only: the baseline that shows what randomisation adds).
3. Train each with ``kneescope train -c FILE -w WS`` (resumes from its checkpoint when run
   again); the model files land in ``WS/models/``.

The recipes (networks, patches, batches) are the ones measured in docs/segmentation.md
("Results"); 4 of the knees are held out for validation (``val_fraction``) and are the
validation set on which the recipe was chosen.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.io import write_nifti
from kneescope.synth.knee import render_knee
from kneescope.synth.params import FULL, KneeParams, sample_knee_params

BANK_SEED = 500_000
"""Seed of bank knee 0 (knee n uses BANK_SEED + n)."""


def bank_params(index: int) -> KneeParams:
    """Parameters of bank knee ``index``: KL grade ``index % 5``, sides alternating."""
    rng = np.random.default_rng(BANK_SEED + index)
    side = "right" if index % 2 == 0 else "left"
    return sample_knee_params(rng, side=side, klg=index % 5)


def _render_one(args: tuple[Path, int]) -> tuple[str, float]:
    out, index = args
    name = f"bank{index:03d}"
    paths = [out / sub / f"{name}.nii.gz" for sub in ("images", "labels", "tissues")]
    if all(p.exists() for p in paths):
        return name, 0.0
    t0 = time.perf_counter()
    sample = render_knee(bank_params(index), FULL)
    write_nifti(sample.labels, paths[1])
    write_nifti(sample.tissues, paths[2])
    write_nifti(sample.image, paths[0])  # last: its presence marks the knee complete
    return name, time.perf_counter() - t0


def make_bank(out: Path, knees: int, jobs: int) -> None:
    for sub in ("images", "labels", "tissues"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for name, seconds in pool.map(_render_one, [(out, n) for n in range(knees)]):
            print(f"{name}: {seconds:.1f} s", flush=True)
    rows = "".join(f"bank{n:03d},{'right' if n % 2 == 0 else 'left'}\n" for n in range(knees))
    (out / "sides.csv").write_text("name,side\n" + rows)
    params = {f"bank{n:03d}": bank_params(n).model_dump(mode="json") for n in range(knees)}
    (out / "bank.json").write_text(json.dumps({"seed0": BANK_SEED, "knees": params}, indent=1))


def _network(dims: int, base: int = 16) -> dict[str, Any]:
    return {
        "name": "unet",
        "spatial_dims": dims,
        "features": [base * 2**n for n in range(5)],
        "strides": [2, 2, 2, 2],
        "num_res_units": 1,
        "act": "prelu",
    }


def _toml(values: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items()) + " }"
        return repr(v)

    return "".join(f"{k} = {fmt(v)}\n" for k, v in values.items())


def training_files(
    bank: Path, minutes: float, threads: int, iterations: int, iterations_3d: int
) -> dict[str, str]:
    """Training file text per model name."""
    common: dict[str, Any] = {
        "task": "segmentation",
        "data_dir": str(bank.resolve()),
        "spacing_mm": [0.7, 140.0 / 384, 140.0 / 384],
        "side_canonical": True,
        "val_fraction": 0.17,
        "seed": 13,
        "threads": threads,
        "max_minutes": minutes,
        "precision": "fp32",
        "checkpoint_every": 50,
        "lr": 0.003,
    }
    dr = {"domain_randomisation": {}}
    recipe_2d: dict[str, Any] = {
        **common,
        "mode": "2d",
        "network": _network(2),
        "patch_size_vox": [1, 256, 256],
        "batch_size": 8,
        "roi_size_vox": [8, 256, 256],
        "iterations": iterations,
        "validate_every": 700,
    }
    files = {
        "knee-seg-2d": {**recipe_2d, "name": "knee-seg-2d", **dr},
        "knee-seg-2d-nodr": {**recipe_2d, "name": "knee-seg-2d-nodr"},
        "knee-seg-3d": {
            **common,
            "name": "knee-seg-3d",
            "mode": "3d",
            # half the in-plane and slice resolution and half the widths: on 2 shared CPU
            # cores the native-grid 3D recipe of docs/segmentation.md (16x192x192 patches,
            # ~10 s per step) got under 50 steps in 20 minutes
            "spacing_mm": [1.4, 140.0 / 192, 140.0 / 192],
            "network": _network(3, base=8),
            "patch_size_vox": [32, 128, 128],
            "batch_size": 2,
            "iterations": iterations_3d,
            "validate_every": 400,
            "max_minutes": minutes + 17.0,
            **dr,
        },
    }
    return {name: _toml(values) for name, values in files.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="stage", required=True)
    b = sub.add_parser("bank")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--knees", type=int, default=16)
    b.add_argument("--jobs", type=int, default=2)
    c = sub.add_parser("configs")
    c.add_argument("--bank", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--minutes", type=float, default=68.0)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--iterations", type=int, default=2800)
    c.add_argument("--iterations-3d", type=int, default=1200)
    args = parser.parse_args()
    if args.stage == "bank":
        make_bank(args.out, args.knees, args.jobs)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in training_files(
            args.bank, args.minutes, args.threads, args.iterations, args.iterations_3d
        ).items():
            (args.out / f"{name}.toml").write_text(text)
            print(args.out / f"{name}.toml")


if __name__ == "__main__":
    main()
