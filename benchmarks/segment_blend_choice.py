"""Window blending for the shipped 2D model, chosen on held-out development knees.

Segments the held-out development knees (seeds 510000-510003, sides right, left, right,
left; ``bench_3d_model.render_knee_files`` with ``held_out=True``: never in the training
bank, not the locked test seeds) with one blending setting and prints the truth Dice per
structure after clean-up and its mean. The table in docs/inference.md ("Blending") is one
run per setting:

    .venv/bin/python benchmarks/segment_blend_choice.py --work DIR --blend constant
    .venv/bin/python benchmarks/segment_blend_choice.py --work DIR --blend gaussian --sigma 0.125
    .venv/bin/python benchmarks/segment_blend_choice.py --work DIR --blend gaussian --sigma 0.25

(~1.5 min per setting on 2 cores once the knees are rendered, ~25 s per knee the first time).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_3d_model import render_knee_files
from kneescope.inference.segmenter import SegmentConfig, Segmenter
from kneescope.io import read_volume

SHIPPED_2D = Path(__file__).resolve().parent.parent / "src/kneescope/pretrained/knee-seg-2d.pt"
SEEDS = (510_000, 510_001, 510_002, 510_003)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the rendered knees")
    parser.add_argument("--blend", choices=["auto", "gaussian", "constant"], default="auto")
    parser.add_argument("--sigma", type=float, default=0.125, help="Gaussian sigma_scale")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--model", type=Path, default=SHIPPED_2D)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the Dice values here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = SegmentConfig(
        device="cpu", precision=args.precision, blend=args.blend, sigma_scale=args.sigma
    )
    seg = Segmenter(args.model, config)
    spec = seg.model.spec
    names = [spec.labels[c] for c in range(1, spec.num_classes)]
    print(f"blend {seg.blend}, sigma {args.sigma}, precision {seg.precision_name}")
    print("knee    side  " + " ".join(n[:10] for n in names) + "  mean")
    dice: dict[int, list[float]] = {}
    for i, seed in enumerate(SEEDS):
        side: Literal["right", "left"] = "right" if i % 2 == 0 else "left"
        volume, truth = render_knee_files(args.work, seed, side, held_out=True)
        labels = seg.segment(read_volume(volume), side=side).labels.array
        want = read_volume(truth).array
        values = []
        for c in range(1, spec.num_classes):
            a, b = labels == c, want == c
            values.append(float(2 * np.sum(a & b) / max(1, int(a.sum()) + int(b.sum()))))
        dice[seed] = values
        cells = " ".join(f"{v:10.3f}" for v in values)
        print(f"{seed} {side:5s} {cells}  {np.mean(values):.4f}", flush=True)
    mean = float(np.mean([np.mean(v) for v in dice.values()]))
    print(f"mean over knees {mean:.4f}")
    if args.json:
        record = {"blend": seg.blend, "sigma_scale": args.sigma, "names": names}
        args.json.write_text(json.dumps({**record, "dice": dice, "mean": mean}, indent=1))


if __name__ == "__main__":
    main()
