"""2D (slice-wise) vs 3D segmentation on the same held-out full-size synthetic knees.

Takes the two models benchmarks/train_accuracy.py trained (``--mode 2d`` and ``--mode 3d``,
same training knees, same time budget) and segments the same held-out knees with each
through the ``kneescope segment`` path; prints Dice per structure and seconds per volume
side by side, and the training record (iterations, minutes, patch, batch) of each model.

Run: .venv/bin/python benchmarks/segment_2d_vs_3d.py --work DIR [--threads 2]
     (models: DIR/ws/models/knee-2d.pt and knee-3d.pt; knees: DIR/test)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from train_accuracy import STRUCTURES, TARGETS, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test", type=int, default=None, help="how many held-out knees")
    args = parser.parse_args()
    from kneescope.inference.segmentation_model import load_model

    test_dir = args.work / "test"
    names = sorted(p.name.removesuffix(".nii") for p in (test_dir / "images").glob("*.nii"))
    names = names[: args.test] if args.test else names
    results: dict[str, Any] = {}
    for mode in ("2d", "3d"):
        path = args.work / "ws" / "models" / f"knee-{mode}.pt"
        if not path.is_file():
            print(f"{mode}: no model at {path}; train it with train_accuracy.py --mode {mode}")
            continue
        print(f"{mode}:")
        results[mode] = evaluate(path, test_dir, names, args.threads)
        training = load_model(path).spec.training
        results[mode]["training"] = {
            "iterations": training.get("iterations"),
            "seconds_this_session": training.get("seconds_this_session"),
            "plan": training.get("plan"),
        }
    modes = list(results)
    print(f"\nheld-out Dice, {len(names)} full-size knees")
    print(f"{'structure':26s} " + " ".join(f"{m:>7s}" for m in modes) + "  target")
    for c, name in STRUCTURES.items():
        cells = " ".join(f"{results[m]['mean_dice'][c]:7.3f}" for m in modes)
        print(f"{name:26s} {cells}  {TARGETS[c]:.2f}")
    secs = " ".join(
        f"{sum(r['seconds'] for r in results[m]['cases']) / len(names):7.1f}" for m in modes
    )
    print(f"{'seconds per volume':26s} {secs}")
    for m in modes:
        t = results[m]["training"]
        print(f"{m}: trained {t['iterations']} iterations, plan {t['plan']}")
    (args.work / "segment_2d_vs_3d.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
