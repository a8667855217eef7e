"""Train the full-leg cascade's two landmark models on synthetic films (the shipped
``full-leg-coarse`` and ``full-leg-fine``).

Usage (from the repository root; resumable: run the same command again to continue)::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/full_leg_models.py \
        --run-dir runs/full_leg [--train-films 160] [--val-films 20]

1. Renders ``--train-films`` films (``kneescope.synth.full_leg.full_leg_films``, seed
   ``--seed``) and ``--val-films`` validation films (seed ``--seed + 1``), and cuts the
   coarse images (two legs per film) and the fine crops from them, as
   the cascade does at inference (``kneescope.capabilities.landmarks.full_leg``); three
   crops per landmark; cached in
   ``RUN_DIR/data.npz``.
2. Trains each model with the training engine (``kneescope.training.engine.fit``, the
   ``landmarks`` task; 1 thread, fp32; checkpoints in ``RUN_DIR/<model>/``, so a stopped run
   resumes where it stopped) and writes ``RUN_DIR/full-leg-coarse.pt`` and
   ``RUN_DIR/full-leg-fine.pt``.

The held-out films of ``benchmarks/full_leg_hka.py`` use other seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kneescope.capabilities.landmarks.config import LandmarkConfig
from kneescope.capabilities.landmarks.full_leg import (
    COARSE_LANDMARKS,
    COARSE_SHAPE,
    COARSE_SPACING_MM,
    FINE_LANDMARKS,
    FINE_SHAPE,
    FINE_SPACING_MM,
    coarse_examples,
    fine_examples,
)
from kneescope.capabilities.landmarks.synthetic import LandmarkData
from kneescope.capabilities.landmarks.task import LandmarkTask
from kneescope.models import NetworkConfig
from kneescope.synth.full_leg import full_leg_films
from kneescope.training.engine import fit
from kneescope.training.engine_config import EngineConfig


def network(out_channels: int, features: tuple[int, ...]) -> NetworkConfig:
    """A small 2D MONAI U-Net with ``len(features) - 1`` down-samplings."""
    return NetworkConfig(
        name="unet",
        spatial_dims=2,
        in_channels=1,
        out_channels=out_channels,
        features=features,
        strides=(2,) * (len(features) - 1),
        num_res_units=1,
        norm="instance",
        act="prelu",
    )


def _sets(n: int, seed: int) -> tuple[LandmarkData, LandmarkData]:
    coarse, fine = [], []
    for k, f in enumerate(full_leg_films(n, seed)):  # one film in memory at a time
        pair = [(f.film, {leg.side: leg.landmarks_mm() for leg in f.legs})]
        coarse.append(coarse_examples(pair, seed=seed * 100_003 + k))
        fine.append(fine_examples(pair, seed=seed * 100_003 + k, per_landmark=3))
    return _join(coarse), _join(fine)


def _join(sets: list[LandmarkData]) -> LandmarkData:
    return LandmarkData(
        images=np.concatenate([s.images for s in sets]),
        positions_mm=np.concatenate([s.positions_mm for s in sets]),
        landmarks=sets[0].landmarks,
        spacing_mm=sets[0].spacing_mm,
    )


def data(run_dir: Path, n_train: int, n_val: int, seed: int) -> dict[str, LandmarkData]:
    """The four sets, rendered once and cached in ``run_dir/data.npz``."""
    cache = run_dir / "data.npz"
    names = ("coarse_train", "fine_train", "coarse_val", "fine_val")
    key = f"{n_train}|{n_val}|{seed}|v2"
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                spacing = {"coarse": COARSE_SPACING_MM, "fine": FINE_SPACING_MM}
                marks = {"coarse": COARSE_LANDMARKS, "fine": FINE_LANDMARKS}
                return {
                    n: LandmarkData(
                        images=z[f"{n}_images"],
                        positions_mm=z[f"{n}_positions"],
                        landmarks=marks[n.split("_")[0]],
                        spacing_mm=(spacing[n.split("_")[0]],) * 2,
                    )
                    for n in names
                }
    t0 = time.perf_counter()
    coarse_train, fine_train = _sets(n_train, seed)
    coarse_val, fine_val = _sets(n_val, seed + 1)
    sets = dict(zip(names, (coarse_train, fine_train, coarse_val, fine_val), strict=True))
    arrays: dict[str, np.ndarray] = {"key": np.array(key)}
    for n, d in sets.items():
        arrays[f"{n}_images"] = d.images
        arrays[f"{n}_positions"] = d.positions_mm
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "data.tmp.npz"
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(cache)
    print(f"rendered {n_train + n_val} films in {time.perf_counter() - t0:.0f} s", flush=True)
    return sets


def train(
    name: str,
    config: LandmarkConfig,
    engine: EngineConfig,
    sets: tuple[LandmarkData, LandmarkData],
    run_dir: Path,
) -> dict[str, object]:
    task = LandmarkTask(config, sets[0], sets[1], seed=engine.seed)
    out = run_dir / f"{name}.pt"
    result = fit(task, engine, run_dir=run_dir / name, model_path=out)
    summary = {
        "model": str(out),
        "iterations_run": result.iterations_run,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 1),
        "metrics": None if result.metrics is None else result.metrics.values,
    }
    print(name, json.dumps(summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/full_leg"))
    parser.add_argument("--train-films", type=int, default=120)
    parser.add_argument("--val-films", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7100)
    parser.add_argument("--coarse-iterations", type=int, default=400)
    parser.add_argument("--fine-iterations", type=int, default=900)
    parser.add_argument("--only", choices=("coarse", "fine"), default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sets = data(args.run_dir, args.train_films, args.val_films, args.seed)
    common = {
        "batch_size": 16,
        "lr": 0.003,
        "schedule": "poly",
        "warmup_iterations": 20,
        "precision": "fp32",
        "checkpointing": "off",
        "validate_every": 100,
        "checkpoint_every": 50,
        "threads": 1,
        "seed": args.seed,
    }
    if args.only in (None, "coarse"):
        coarse = LandmarkConfig(
            landmarks=COARSE_LANDMARKS,
            input_size_vox=COARSE_SHAPE,
            spacing_mm=(COARSE_SPACING_MM, COARSE_SPACING_MM),
            heatmap_sigma_mm=7.5,
            success_radius_mm=10.0,
            network=network(3, (16, 32, 64, 64)),
        )
        engine = EngineConfig(iterations=args.coarse_iterations, **common)  # type: ignore[arg-type]
        train(
            "full-leg-coarse",
            coarse,
            engine,
            (sets["coarse_train"], sets["coarse_val"]),
            args.run_dir,
        )
    if args.only in (None, "fine"):
        fine = LandmarkConfig(
            landmarks=FINE_LANDMARKS,
            input_size_vox=FINE_SHAPE,
            spacing_mm=(FINE_SPACING_MM, FINE_SPACING_MM),
            heatmap_sigma_mm=1.4,
            success_radius_mm=2.0,
            network=network(1, (16, 32, 64, 64)),
        )
        engine = EngineConfig(iterations=args.fine_iterations, **common)  # type: ignore[arg-type]
        train("full-leg-fine", fine, engine, (sets["fine_train"], sets["fine_val"]), args.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
