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


def _sets(
    n: int, seed: int, per_landmark: int, first: int = 0
) -> tuple[LandmarkData, LandmarkData]:
    coarse, fine = [], []
    for k, f in enumerate(full_leg_films(n, seed, first=first), start=first):
        pair = [(f.film, {leg.side: leg.landmarks_mm() for leg in f.legs})]  # one film at a time
        coarse.append(coarse_examples(pair, seed=seed * 100_003 + k))
        fine.append(fine_examples(pair, seed=seed * 100_003 + k, per_landmark=per_landmark))
    return _join(coarse), _join(fine)


def _join(sets: list[LandmarkData]) -> LandmarkData:
    return LandmarkData(
        images=np.concatenate([s.images for s in sets]),
        positions_mm=np.concatenate([s.positions_mm for s in sets]),
        landmarks=sets[0].landmarks,
        spacing_mm=sets[0].spacing_mm,
    )


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def _load(path: Path, key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files} if str(z["key"]) == key else None


def _part_file(run_dir: Path, part: int, version: str) -> Path:
    """Part files: ``data.part<k>.npz`` (v3: the films of the generator before its standing
    geometry, what the shipped models were trained on) or ``data.<version>.part<k>.npz``."""
    return run_dir / (
        f"data.part{part}.npz" if version == "v3" else f"data.{version}.part{part}.npz"
    )


def render_part(
    run_dir: Path, part: int, parts: int, n_train: int, n_val: int, seed: int, version: str = "v4"
) -> None:
    """Render every ``parts``-th film from ``part`` (train and validation) into a part file,
    so that several processes can share the rendering."""
    key = f"{n_train}|{n_val}|{seed}|{part}/{parts}|{version}"
    path = _part_file(run_dir, part, version)
    if _load(path, key) is not None:
        return
    arrays: dict[str, np.ndarray] = {"key": np.array(key)}
    for what, n, s, per in (("train", n_train, seed, 4), ("val", n_val, seed + 1, 2)):
        ks = [k for k in range(n) if k % parts == part]
        sets = [_sets(1, s, per, first=k) for k in ks]
        for name, idx in (("coarse", 0), ("fine", 1)):
            joined = _join([x[idx] for x in sets])
            arrays[f"{name}_{what}_images"] = joined.images
            arrays[f"{name}_{what}_positions"] = joined.positions_mm
    _save(path, arrays)


def data(
    run_dir: Path, n_train: int, n_val: int, seed: int, parts: int, version: str = "v4"
) -> dict[str, LandmarkData]:
    """The four sets (``coarse_train``, ``fine_train``, ``coarse_val``, ``fine_val``) from the
    part files (rendered here when missing)."""
    t0 = time.perf_counter()
    for part in range(parts):
        render_part(run_dir, part, parts, n_train, n_val, seed, version)
    loaded = [
        _load(_part_file(run_dir, p, version), f"{n_train}|{n_val}|{seed}|{p}/{parts}|{version}")
        for p in range(parts)
    ]
    spacing = {"coarse": COARSE_SPACING_MM, "fine": FINE_SPACING_MM}
    marks = {"coarse": COARSE_LANDMARKS, "fine": FINE_LANDMARKS}
    sets = {}
    for name in ("coarse_train", "fine_train", "coarse_val", "fine_val"):
        kind = name.split("_")[0]
        sets[name] = LandmarkData(
            images=np.concatenate([z[f"{name}_images"] for z in loaded if z is not None]),
            positions_mm=np.concatenate([z[f"{name}_positions"] for z in loaded if z is not None]),
            landmarks=marks[kind],
            spacing_mm=(spacing[kind],) * 2,
        )
    extent = np.asarray(COARSE_SHAPE, dtype=np.float64) * COARSE_SPACING_MM - COARSE_SPACING_MM
    for name in ("coarse_train", "coarse_val"):  # v3 files still hold legs off their grid
        d = sets[name]
        keep = ((d.positions_mm >= 0) & (d.positions_mm <= extent)).all(axis=(1, 2))
        sets[name] = LandmarkData(
            images=d.images[keep],
            positions_mm=d.positions_mm[keep],
            landmarks=d.landmarks,
            spacing_mm=d.spacing_mm,
        )
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)
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
    parser.add_argument("--train-films", type=int, default=60)
    parser.add_argument("--val-films", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7100)
    parser.add_argument("--coarse-iterations", type=int, default=300)
    parser.add_argument("--fine-iterations", type=int, default=500)
    parser.add_argument("--only", choices=("coarse", "fine"), default=None)
    parser.add_argument("--parts", type=int, default=3, help="rendering split into parts")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-time budget")
    parser.add_argument(
        "--data-version", default="v4", help="part files to train on (v3: the shipped models')"
    )
    parser.add_argument("--render-part", type=int, default=None, help="render this part only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.render_part is not None:
        render_part(
            args.run_dir, args.render_part, args.parts, args.train_films, args.val_films, args.seed
        )
        return 0
    sets = data(
        args.run_dir, args.train_films, args.val_films, args.seed, args.parts, args.data_version
    )
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
        "max_minutes": args.max_minutes,
    }
    if args.only in (None, "coarse"):
        coarse = LandmarkConfig(
            landmarks=COARSE_LANDMARKS,
            input_size_vox=COARSE_SHAPE,
            spacing_mm=(COARSE_SPACING_MM, COARSE_SPACING_MM),
            heatmap_sigma_mm=7.5,
            success_radius_mm=10.0,
            network=network(3, (8, 16, 32, 64)),
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
