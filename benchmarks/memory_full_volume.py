"""The goal: the nnU-Net-class 3D U-Net trained on the whole 160x384x384 volume.

1. Plan it for an 11 GB device (``plan_training``): which precision, checkpointing and
   offload make the whole volume fit, with the predicted peak and breakdown.
2. On the CPU (host and device memory are one, so no offload), measure the same step
   (bf16, no checkpointing, no offload) at smaller inputs in a fresh process and compare
   with the prediction; the full volume itself (predicted ~30 GB) exceeds what this shared
   machine may use (about 12 GB), so measured peaks are extrapolated linearly in voxels
   (activations scale with the input; weights and optimizer state do not). Usage::

    .venv/bin/python benchmarks/memory_full_volume.py [--sizes 64x128x128,96x192x192]
"""

from __future__ import annotations

import argparse
import math

from kneescope.memory import StepConfig, measure_cpu, predict_step
from kneescope.memory.planner import patch_ladder, plan_training
from kneescope.models import NetworkConfig, count_parameters, divisor, preset

FULL = (160, 384, 384)
GB = 1e9


def largest_fitting(
    net: NetworkConfig, checkpointing: str, offload: bool, budget: int = 11 * 10**9
) -> tuple[tuple[int, ...], int]:
    """Largest rung of the planner's patch ladder from FULL whose exact need fits ``budget``
    (bisection over the ladder; need grows with the rung's voxels). ``((), 0)`` if none."""
    ladder = patch_ladder(FULL, (0.7, 0.365, 0.365), divisor(net), (64, 64, 64))

    def need(shape: tuple[int, ...]) -> int:
        step = StepConfig(
            input_shape_vox=shape,
            precision="bf16",
            checkpointing=checkpointing,  # type: ignore[arg-type]
            offload=offload,
            device="cuda",
            foreach=True,
        )
        return predict_step(net, step).required_bytes

    lo, hi = 0, len(ladder) - 1  # find the first (largest) rung that fits
    if need(ladder[hi]) > budget:
        return (), 0
    while lo < hi:
        mid = (lo + hi) // 2
        if need(ladder[mid]) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return ladder[lo], need(ladder[lo])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="64x128x128,96x192x192")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-measure", action="store_true", help="predictions only")
    args = parser.parse_args()
    net = preset("unet3d-nnunet")
    print(f"unet3d-nnunet: {count_parameters(net):,d} parameters, features {net.features}")
    plan = plan_training(net, FULL, (0.7, 0.365, 0.365), 11 * 10**9)
    full = plan.full_volume
    print(f"planned in {plan.seconds:.1f} s; budget 11 GB (1e9 B), cuda kernels, Adam foreach")
    for c in plan.full_volume_options:
        b = {k: round(v / GB, 2) for k, v in c.breakdown_bytes.items()}
        print(
            f"  full volume fits: {c.precision}, checkpointing {c.checkpointing}, offload "
            f"{c.offload}: peak {c.peak_bytes / GB:.2f} GB, need {c.required_bytes / GB:.2f} GB "
            f"(margin incl.), host RAM for offloaded activations {c.host_offload_bytes / GB:.2f}"
            f" GB/step, {c.flops / 1e12:.1f} TFLOP/step; breakdown {b}"
        )
    if full is None:
        print("  full volume does not fit 11 GB with any option")
    for c in plan.candidates:
        print(
            f"  patch plan: {'x'.join(map(str, c.patch_size))} batch {c.batch_size} "
            f"{c.precision} ckpt {c.checkpointing} offload {c.offload}: need "
            f"{c.required_bytes / GB:.2f} GB"
        )
    for ck in ("off", "selective", "per_block"):
        for off in (False, True):
            e = predict_step(
                net,
                StepConfig(
                    input_shape_vox=FULL,
                    precision="bf16",
                    checkpointing=ck,
                    offload=off,
                    device="cuda",
                    foreach=True,
                ),
            )
            print(
                f"  full volume bf16 ckpt={ck:9} offload={off!s:5}: peak {e.peak_bytes / GB:6.2f}"
                f" GB, need {e.required_bytes / GB:6.2f} GB"
            )

    print("largest volume (batch 1, bf16) whose need fits 11 GB, shrinking the longest mm axis:")
    for ck in ("off", "selective", "per_block"):
        for off in (False, True):
            shape, need = largest_fitting(net, ck, off)
            share = math.prod(shape) / math.prod(FULL) if shape else 0.0
            print(
                f"  ckpt={ck:9} offload={off!s:5}: {'x'.join(map(str, shape)) or 'none':12} "
                f"({share:.0%} of the volume), need {need / GB:.2f} GB"
            )

    if args.no_measure:
        return
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    steps = [StepConfig(input_shape_vox=s, precision="bf16") for s in sizes]  # cpu kernels
    print(f"\nCPU, bf16, no checkpointing, no offload, {args.threads} threads (real steps):")
    measured = measure_cpu([(net, s) for s in steps], threads=args.threads, timeout_s=3000)
    points = []
    for step, m in zip(steps, measured, strict=True):
        e = predict_step(net, step)
        v = math.prod(step.input_shape_vox)
        points.append((v, m.peak_rss_bytes, e.peak_bytes))
        print(
            f"  {'x'.join(map(str, step.input_shape_vox)):>12}: predicted {e.peak_bytes / GB:6.2f}"
            f" GB, measured {m.peak_rss_bytes / GB:6.2f} GB"
            f" (tracked {m.tracked_peak_bytes / GB:.2f})"
            f", ratio {e.peak_bytes / m.peak_rss_bytes:.3f}, step {m.seconds:.0f} s"
        )
    full_pred = predict_step(net, StepConfig(input_shape_vox=FULL, precision="bf16"))
    if len(points) >= 2:
        (v1, m1, _), (v2, m2, _) = points[0], points[-1]
        slope = (m2 - m1) / (v2 - v1)
        extrapolated = m1 + slope * (math.prod(FULL) - v1)
        print(
            f"  160x384x384: predicted {full_pred.peak_bytes / GB:.2f} GB (cpu kernels), "
            f"measured extrapolated {extrapolated / GB:.2f} GB, ratio "
            f"{full_pred.peak_bytes / extrapolated:.3f}  (not run: exceeds ~12 GB here)"
        )


if __name__ == "__main__":
    main()
