"""Predicted vs measured peak memory of real CPU steps over a grid of small configurations.

Grid: 2D and 3D, U-Net-like (MONAI UNet, DynUNet) and VGG-like, fp32 and bf16, activation
checkpointing off / per block / selective. Prediction: ``kneescope.memory.predict_step``
(fake tensors, nothing allocated). Measurement: ``kneescope.memory.measure_cpu`` (a real
step in a fresh process; peak RSS growth with malloc returning memory, plus the tensor
allocations tracked op by op). Usage::

    .venv/bin/python benchmarks/memory_predict_vs_measure.py [--json out.json] [--cold]
"""

from __future__ import annotations

import argparse
import json
import time

from kneescope.memory import StepConfig, measure_cpu, predict_step
from kneescope.models import NetworkConfig, preset

SMALL_VGG_3D = NetworkConfig(
    name="vgg_classifier",
    spatial_dims=3,
    out_channels=5,
    features=(16, 32, 64, 128, 128),
    convs_per_stage=(2, 2, 4, 4, 4),
    fc_features=(512, 512),
    input_shape_vox=(64, 64, 64),
    norm="none",
    act="relu",
)


def grid() -> list[tuple[str, NetworkConfig, StepConfig]]:
    cases: list[tuple[str, NetworkConfig, StepConfig]] = []
    nets = [
        ("unet2d-small", preset("unet2d-small"), (256, 256), 4),
        ("vgg19-2d@128", preset("vgg19-2d", (128, 128)), (128, 128), 2),
        ("unet3d-small", preset("unet3d-small"), (64, 64, 64), 1),
        ("unet3d-nnunet", preset("unet3d-nnunet"), (64, 64, 64), 1),
        ("vgg-3d-small", SMALL_VGG_3D, (64, 64, 64), 1),
    ]
    variants = [("fp32", "off"), ("fp32", "per_block"), ("bf16", "off"), ("bf16", "selective")]
    for name, net, shape, batch in nets:
        for precision, ck in variants:
            if name == "unet3d-nnunet" and precision == "fp32":
                continue  # slow on 2 shared cores; its bf16 rows stand for it
            step = StepConfig(
                input_shape_vox=shape, batch_size=batch, precision=precision, checkpointing=ck
            )
            cases.append((name, net, step))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--cold", action="store_true", help="warm up on a tiny input only")
    args = parser.parse_args()
    cases = grid()
    start = time.perf_counter()
    rows = []
    header = (
        f"{'network':14} {'input':>12} {'b':>2} {'prec':>4} {'ckpt':>9} | {'pred MiB':>9} "
        f"{'RSS MiB':>8} {'ratio':>6} {'tracked':>8} | {'weights':>7} {'grads':>6} {'opt':>6} "
        f"{'activ':>7} {'temp':>7} | {'GFLOP':>7} {'pred s':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, net, step in cases:
        m = measure_cpu([(net, step)], cold=args.cold, timeout_s=3000)[0]
        e = predict_step(net, step)
        b = {k: v / 2**20 for k, v in e.breakdown_bytes.items()}
        ratio = e.peak_bytes / m.peak_rss_bytes
        print(
            f"{name:14} {'x'.join(map(str, step.input_shape_vox)):>12} {step.batch_size:>2} "
            f"{step.precision:>4} {step.checkpointing:>9} | {e.peak_bytes / 2**20:9.1f} "
            f"{m.peak_rss_bytes / 2**20:8.1f} {ratio:6.3f} {m.tracked_peak_bytes / 2**20:8.1f} | "
            f"{b['weights']:7.1f} {b['gradients']:6.1f} {b['optimizer_state']:6.1f} "
            f"{b['activations']:7.1f} {b['temporaries']:7.1f} | {e.flops / 1e9:7.1f} "
            f"{e.seconds:6.2f}",
            flush=True,
        )
        rows.append(
            {
                "network": name,
                "step": step.model_dump(mode="json"),
                "predicted_bytes": e.peak_bytes,
                "measured_rss_bytes": m.peak_rss_bytes,
                "measured_tracked_bytes": m.tracked_peak_bytes,
                "ratio": ratio,
                "breakdown_bytes": e.breakdown_bytes,
                "flops": e.flops,
                "predict_seconds": e.seconds,
                "step_seconds": m.seconds,
            }
        )
    ratios = [r["ratio"] for r in rows]
    kind = "cold" if args.cold else "steady-state"
    print(
        f"\n{len(rows)} cases, ratio predicted/measured: min {min(ratios):.3f}, "
        f"max {max(ratios):.3f}; within 10 %: {sum(0.9 <= r <= 1.1 for r in ratios)}/{len(rows)}"
        f"; {kind} measurement; {time.perf_counter() - start:.0f} s"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
