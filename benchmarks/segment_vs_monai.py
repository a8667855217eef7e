"""`kneescope segment` vs MONAI's sliding_window_inference defaults, same volume, same weights.

One run compares, on one full-size 160x384x384 synthetic knee and one trained model file:

- ours: :class:`kneescope.inference.Segmenter` with the defaults of ``kneescope segment``
  (streaming slab stitching, Gaussian blending, bf16 autocast where the CPU runs it natively,
  channels-last, overlap 0.25, largest-component clean-up);
- MONAI: the same preprocessing (reorientation, resampling to the model spacing, intensity
  normalisation, all through kneescope.transforms), then
  ``monai.inferers.sliding_window_inference(x, roi, 1, net)`` with default arguments (fp32,
  overlap 0.25, constant blending, sw_batch_size 1) on the whole volume, argmax, and
  nearest-neighbour resampling back.

Two more runs separate what the streaming engine changes from what its defaults change:
``ours-constant`` (bf16, MONAI's constant weighting, i.e. ``kneescope segment --blend
constant``) and ``ours-constant-fp32`` (MONAI's weighting and precision: its map should equal
MONAI's up to clean-up).

Each runs in a fresh subprocess with the same thread count; we report wall time of the
segmentation call (volume in memory -> label map on the input grid), peak RSS of the process
(``ru_maxrss``, which includes the Python/torch baseline, reported too), achieved GFLOP/s
(network FLOPs per window from ``torch.utils.flop_counter`` x windows / wall time) and the
Dice per structure between the two label maps.

Side-canonical models see left knees mirrored; both engines get the same mirrored input
(``--side``, default right: the rendered knee is a right one).

Run: .venv/bin/python benchmarks/segment_vs_monai.py --model M.pt --volume IMG.nii [--threads 2]
[--side left] [--truth LABELS.nii] (without --volume a held-out synthetic right knee is
rendered; --truth adds each map's Dice against the true label map).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ENGINES = ("monai", "ours", "ours-constant", "ours-constant-fp32")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _window_flops(net: Any, spec: Any, roi: tuple[int, int, int]) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    shape = (1, 1, *roi) if spec.mode == "3d" else (roi[0], 1, roi[1], roi[2])
    x = torch.zeros(shape)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def _windows(shape: tuple[int, ...], roi: tuple[int, ...], overlap: tuple[float, ...]) -> int:
    from kneescope.inference.windows import window_starts

    total = 1
    for n, r, o in zip(shape, roi, overlap, strict=True):
        total *= len(window_starts(n, r, o))
    return total


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from kneescope.inference.model_grid import plan_model_grid
    from kneescope.inference.segmentation_model import load_model
    from kneescope.inference.segmenter import SegmentConfig, Segmenter
    from kneescope.io import read_volume

    image = read_volume(args.volume)
    model = load_model(args.model)
    spec = model.spec
    baseline_mb = _rss_mb()
    if args.child in ENGINES[1:]:
        del model  # as `kneescope segment` does: the Segmenter loads the file itself
        config = SegmentConfig(
            device="cpu",
            precision="fp32" if args.child.endswith("fp32") else args.precision,
            blend="constant" if "constant" in args.child else "gaussian",
        )
        seg = Segmenter(args.model, config)
        net_for_flops = seg.network
        t0 = time.perf_counter()
        result = seg.segment(image, side=args.side)
        wall = time.perf_counter() - t0
        labels = result.labels.array
        precision = seg.precision_name
        grid_shape = plan_model_grid(image, spec, args.side).grid.target_shape
        overlap = (0.0, 0.25, 0.25) if spec.mode == "2d" else (0.25,) * 3
        roi = spec.roi_size_vox
    else:
        cleaned = args.out.with_name(args.out.stem + "_cleaned.npy")
        labels, wall, grid_shape = _monai(image, model, args.side, cleaned)
        net_for_flops = model.build()
        precision = "fp32"
        roi = spec.roi_size_vox
        overlap = (0.0, 0.25, 0.25) if spec.mode == "2d" else (0.25,) * 3
    peak = _rss_mb()
    windows = _windows(grid_shape, roi, overlap)
    flops = _window_flops(net_for_flops.float(), spec, roi) * windows
    np.save(args.out, labels)
    print(
        json.dumps(
            {
                "engine": args.child,
                "wall_s": wall,
                "peak_rss_mb": peak,
                "baseline_rss_mb": baseline_mb,
                "gflop": flops / 1e9,
                "gflops_per_s": flops / 1e9 / wall,
                "windows": windows,
                "precision": precision,
                "model_grid": list(grid_shape),
                "roi": list(roi),
            }
        )
    )


def _monai(
    image: Any, model: Any, side: str, cleaned_out: Path
) -> tuple[Any, float, tuple[int, int, int]]:
    """The plain MONAI way: whole-volume tensors, default sliding window, argmax."""
    import torch
    from monai.inferers import sliding_window_inference

    from kneescope.inference.cleanup import clean_up_knee
    from kneescope.inference.model_grid import plan_model_grid
    from kneescope.transforms.intensity import intensity_stats

    spec = model.spec
    net = model.build()
    t0 = time.perf_counter()
    frame = plan_model_grid(image, spec, side)
    grid = frame.grid
    work = grid.image_to_target(frame.to_model_axes(image.array))
    x = intensity_stats(work, spec.normalisation).apply_numpy(work)
    with torch.inference_mode():
        if spec.mode == "3d":
            logits = sliding_window_inference(
                torch.from_numpy(x)[None, None], spec.roi_size_vox, 1, net
            )
            labels_t = torch.argmax(logits, dim=1)[0].to(torch.uint8).numpy()
        else:  # slice-wise: the whole stack as a batch of 2D images
            logits = sliding_window_inference(
                torch.from_numpy(x)[:, None], spec.roi_size_vox[1:], 1, net
            )
            labels_t = torch.argmax(logits, dim=1).to(torch.uint8).numpy()
    wall = time.perf_counter() - t0
    labels = np.array(frame.labels_to_source(labels_t), order="C", copy=True)  # clean-up edits it
    # outside the timing: MONAI's map given kneescope's clean-up, for a like-for-like Dice
    clean_up_knee(
        labels_t,
        names=spec.labels,
        orientation=spec.orientation,
        side=side,
        side_canonical=spec.side_canonical,
    )
    np.save(str(cleaned_out), np.ascontiguousarray(frame.labels_to_source(labels_t)))
    return labels, wall, grid.target_shape


def dice_table(a: np.ndarray, b: np.ndarray, classes: int) -> dict[int, float]:
    out = {}
    for c in range(1, classes):
        x, y = a == c, b == c
        denom = int(x.sum()) + int(y.sum())
        out[c] = float("nan") if denom == 0 else 2.0 * int((x & y).sum()) / denom
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--volume", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--side", choices=["right", "left"], default="right")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--truth", type=Path, help="label map of --volume: Dice vs truth too")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="segbench-"))
    volume = args.volume
    if volume is None:
        sys.path.insert(0, str(Path(__file__).parent))
        from segment_data import make_set

        make_set(tmp / "data", 1, held_out=True)
        volume = tmp / "data" / "images" / "test000.nii"
    results: dict[str, Any] = {}
    for engine in ENGINES:
        out = tmp / f"{engine}.npy"
        cmd = [
            sys.executable,
            __file__,
            "--child",
            engine,
            "--model",
            str(args.model),
            "--volume",
            str(volume),
            "--threads",
            str(args.threads),
            "--precision",
            args.precision,
            "--side",
            args.side,
            "--out",
            str(out),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"{engine} run failed")
        results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[engine]["labels"] = out
    from kneescope.inference.segmentation_model import load_model

    spec = load_model(args.model).spec
    a, b = np.load(results["ours"]["labels"]), np.load(results["monai"]["labels"])
    dice = dice_table(a, b, spec.num_classes)
    cleaned = np.load(results["monai"]["labels"].with_name("monai_cleaned.npy"))
    dice_same_cleanup = dice_table(a, cleaned, spec.num_classes)
    plain = np.load(results["ours-constant-fp32"]["labels"])
    dice_plain = dice_table(plain, cleaned, spec.num_classes)
    constant = np.load(results["ours-constant"]["labels"])
    dice_constant = dice_table(constant, cleaned, spec.num_classes)
    finite = [d for d in dice.values() if not math.isnan(d)]
    ours, monai = results["ours"], results["monai"]
    summary = {
        "volume": str(volume),
        "volume_shape": list(a.shape),
        "model": str(args.model),
        "threads": args.threads,
        "monai": {k: v for k, v in monai.items() if k != "labels"},
        "ours": {k: v for k, v in ours.items() if k != "labels"},
        "wall_ratio": ours["wall_s"] / monai["wall_s"],
        "peak_rss_ratio": ours["peak_rss_mb"] / monai["peak_rss_mb"],
        "dice_between_label_maps": {spec.labels[c]: d for c, d in dice.items()},
        "dice_min": min(finite) if finite else float("nan"),
        "dice_vs_monai_with_same_cleanup": {
            spec.labels[c]: d for c, d in dice_same_cleanup.items()
        },
        "ours_constant": {k: v for k, v in results["ours-constant"].items() if k != "labels"},
        "wall_ratio_constant": results["ours-constant"]["wall_s"] / monai["wall_s"],
        "peak_rss_ratio_constant": results["ours-constant"]["peak_rss_mb"] / monai["peak_rss_mb"],
        "dice_ours_constant_vs_monai_same_cleanup": {
            spec.labels[c]: d for c, d in dice_constant.items()
        },
        "ours_constant_fp32": {
            k: v for k, v in results["ours-constant-fp32"].items() if k != "labels"
        },
        "dice_ours_constant_fp32_vs_monai_same_cleanup": {
            spec.labels[c]: d for c, d in dice_plain.items()
        },
        "dice_all_foreground": dice_table((a > 0).astype(np.uint8), (b > 0).astype(np.uint8), 2)[1],
    }
    print(
        f"volume {a.shape}, model grid {ours['model_grid']}, window {ours['roi']}, "
        f"{args.threads} threads"
    )
    print(
        f"{'':18s} {'wall s':>8s} {'peak RSS MB':>12s} {'baseline MB':>12s} "
        f"{'GFLOP/s':>8s} {'precision':>9s}"
    )
    for name in ENGINES:
        r = results[name]
        print(
            f"{name:18s} {r['wall_s']:8.2f} {r['peak_rss_mb']:12.0f} "
            f"{r['baseline_rss_mb']:12.0f} {r['gflops_per_s']:8.1f} {r['precision']:>9s}"
        )
    print(
        f"ratio ours/monai: wall {summary['wall_ratio']:.2f}, "
        f"peak RSS {summary['peak_rss_ratio']:.2f}"
    )
    print(
        "Dice between label maps: "
        + ", ".join(f"{k} {v:.4f}" for k, v in summary["dice_between_label_maps"].items())
    )
    print(
        "Dice with MONAI's map given the same clean-up: "
        + ", ".join(f"{spec.labels[c]} {v:.4f}" for c, v in dice_same_cleanup.items())
    )
    print(
        f"ratio ours-constant/monai: wall {summary['wall_ratio_constant']:.2f}, "
        f"peak RSS {summary['peak_rss_ratio_constant']:.2f}"
    )
    print(
        "Dice, ours with constant blending (bf16) vs MONAI (same clean-up): "
        + ", ".join(f"{spec.labels[c]} {v:.4f}" for c, v in dice_constant.items())
    )
    print(
        "Dice, ours with constant blending in fp32 vs MONAI (same clean-up): "
        + ", ".join(f"{spec.labels[c]} {v:.4f}" for c, v in dice_plain.items())
    )
    if args.truth is not None:
        from kneescope.io import read_volume

        truth = read_volume(args.truth).array
        maps = {
            "monai": b,
            "monai+cleanup": cleaned,
            "ours": a,
            "ours-constant": constant,
            "ours-constant-fp32": plain,
        }
        summary["dice_vs_truth"] = {}
        for name, m in maps.items():
            table = dice_table(m, truth, spec.num_classes)
            summary["dice_vs_truth"][name] = {spec.labels[c]: d for c, d in table.items()}
            print(f"Dice vs truth, {name}: " + ", ".join(f"{d:.4f}" for d in table.values()))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
