"""Held-out accuracy of 2D and 3D models trained on synthetic knees within a CPU time budget.

Stages (each reuses what earlier runs left in --work):
1. data: N training knees and M held-out knees at full size (160x384x384), see
   segment_data.py (held-out: other seeds, noise levels, obliquity, offsets);
2. train: ``kneescope.training.run.run_training`` (the segmentation task on the training
   engine) with the config below and ``max_minutes``;
3. evaluate: ``kneescope.inference.Segmenter`` (the ``kneescope segment`` path) on each
   held-out knee at full size; Dice per structure against the exact label map; wall time.

Run: .venv/bin/python benchmarks/train_accuracy.py --work DIR --mode 3d --minutes 60
     [--train 16] [--test 4] [--threads 2] [--spacing 0.7 0.729 0.729] [--iterations N]
Prints a table and writes DIR/accuracy_<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from kneescope.core import KNEE_LABELS
from segment_data import knee_side, make_set

STRUCTURES = dict(KNEE_LABELS.labels)  # label value -> structure name
TARGETS = {1: 0.95, 3: 0.95, 6: 0.95, 2: 0.85, 4: 0.85, 5: 0.85, 7: 0.85, 8: 0.80, 9: 0.80}


def train_config(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    common = {
        "name": f"knee-{args.mode}",
        "mode": args.mode,
        "data_dir": str(data_dir),
        "spacing_mm": list(args.spacing),
        "iterations": args.iterations,
        "validate_every": max(1, args.iterations // 4),
        "checkpoint_every": 50,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "threads": args.threads,
        "max_minutes": args.minutes,
        "lr": args.lr,
    }
    if args.mode == "3d":
        return {
            **common,
            "network": {
                "name": "unet",
                "spatial_dims": 3,
                "features": list(args.features),
                "strides": [2] * (len(args.features) - 1),
                "num_res_units": 1,
                "act": "prelu",
            },
            "patch_size_vox": list(args.patch),
            "batch_size": args.batch,
        }
    return {
        **common,
        "network": {
            "name": "unet",
            "spatial_dims": 2,
            "features": list(args.features),
            "strides": [2] * (len(args.features) - 1),
            "num_res_units": 1,
            "act": "prelu",
        },
        "patch_size_vox": [1, *args.patch[1:]],
        "batch_size": args.batch,
        "roi_size_vox": [8, *args.patch[1:]],  # inference: 8 slices per network call
    }


def evaluate(model_path: Path, test_dir: Path, names: list[str], threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from kneescope.inference.segmenter import SegmentConfig, Segmenter
    from kneescope.io import read_volume

    seg = Segmenter(model_path, SegmentConfig(device="cpu"))
    rows = []
    for n, name in enumerate(names):
        image = read_volume(test_dir / "images" / f"{name}.nii")
        truth = read_volume(test_dir / "labels" / f"{name}.nii").array
        t0 = time.perf_counter()
        pred = seg.segment(image, side=knee_side(n)).labels.array
        seconds = time.perf_counter() - t0
        dice = {}
        for c in STRUCTURES:
            x, y = pred == c, truth == c
            denom = int(x.sum()) + int(y.sum())
            dice[c] = float("nan") if denom == 0 else 2.0 * int((x & y).sum()) / denom
        rows.append({"name": name, "seconds": seconds, "dice": dice})
        print(f"  {name}: {seconds:.1f} s, " + " ".join(f"{d:.3f}" for d in dice.values()))
    mean = {c: float(np.nanmean([r["dice"][c] for r in rows])) for c in STRUCTURES}
    return {"cases": rows, "mean_dice": mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--mode", choices=["2d", "3d"], default="3d")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.36458333, 0.36458333))
    parser.add_argument("--features", type=int, nargs="+", default=(16, 32, 64, 128))
    parser.add_argument("--patch", type=int, nargs=3, default=(32, 128, 128))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from kneescope.training.config import split_training_table
    from kneescope.training.run import run_training
    from kneescope.workspace import Workspace

    t0 = time.perf_counter()
    make_set(args.work / "train", args.train, held_out=False)
    test_names = make_set(args.work / "test", args.test, held_out=True)
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)

    ws = Workspace.resolve(args.work / "ws").ensure()
    config = split_training_table(train_config(args, args.work / "train"))
    model_path = ws.models_dir / f"{config.name}.pt"
    train_info: dict[str, Any] = {}
    if not args.skip_train:
        last = [0.0]

        def progress(p: Any) -> None:
            if time.perf_counter() - last[0] > 30 or p.iteration == p.total:
                last[0] = time.perf_counter()
                print(
                    f"  it {p.iteration}/{p.total} loss {p.loss:.3f} dice {p.score:.3f} "
                    f"elapsed {p.elapsed_s / 60:.1f} min",
                    flush=True,
                )

        result = run_training(config, ws, progress=progress)
        train_info = {
            "minutes": result.seconds / 60.0,
            "iterations": result.model.training["iterations"],
            "plan": result.plan,
            "validation": {} if result.metrics is None else dict(result.metrics.values),
            "config": config.model_dump(mode="json"),
        }
        print(f"trained {train_info['iterations']} iterations in {train_info['minutes']:.1f} min")
    report = evaluate(model_path, args.work / "test", test_names, args.threads)
    report["training"] = train_info
    print(f"\nheld-out Dice ({args.mode}, {len(test_names)} full-size knees):")
    print(f"{'structure':26s} {'Dice':>6s} {'target':>6s}")
    for c, name in STRUCTURES.items():
        d = report["mean_dice"][c]
        ok = "ok" if d >= TARGETS[c] else "below"
        print(f"{name:26s} {d:6.3f} {TARGETS[c]:6.2f} {ok}")
    out = args.work / f"accuracy_{args.mode}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
