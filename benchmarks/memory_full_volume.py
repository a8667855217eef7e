"""The goal: the nnU-Net-class 3D U-Net trained on the whole 160x384x384 volume.

1. Plan it for an 11 GB device (``plan_training``): which precision, checkpointing and
   offload make the whole volume fit, with the predicted peak and breakdown.
2. On the CPU (host and device memory are one, so no offload), measure the same step
   (bf16, no checkpointing, no offload) at smaller inputs in a fresh process and compare
   with the prediction; the full volume itself (predicted ~30 GB) exceeds what this shared
   machine may use (about 12 GB), so measured peaks are extrapolated linearly in voxels
   (activations scale with the input; weights and optimizer state do not).
3. Slabs (``--slabs``; docs/memory.md §8): the same network with its full-resolution stage
   computed in slabs of N slices (``kneescope.memory.slabs``, exact), predicted at the whole
   volume (bf16, cuda kernels, with each checkpointing of the inner levels and offload), and
   the slab step measured on the CPU with the planner's method (fp32: bf16 is emulated on a
   CPU without AVX512-BF16) at ``--slab-sizes``, prediction against measurement. Usage::

    .venv/bin/python benchmarks/memory_full_volume.py [--sizes 64x128x128,96x192x192]
    nice .venv/bin/python benchmarks/memory_full_volume.py --slabs --no-measure   # ~5 min cold
    nice .venv/bin/python benchmarks/memory_full_volume.py --slabs --slab-sizes 64x128x128
    python benchmarks/memory_full_volume.py --gpu slabs_gpu.json   # on a CUDA machine, ~2-5 min

``--gpu`` measures the whole-volume slab steps on a CUDA device as ``benchmarks/memory_gpu.py``
does (warm-up step, then ``torch.cuda.max_memory_allocated`` of the next), prediction beside.

Columns of the slab table: ``slab`` slices per slab, ``ckpt`` checkpointing of the inner
levels (1-5), ``offload`` saved activations of the inner levels to host, ``peak`` predicted
peak GB (1e9 B), ``need`` peak + 10 % + 0.54 GB, ``fits`` need <= 11 GB, ``TFLOP`` per step
(recomputation included) and its ratio to the plain step, ``host`` GB offloaded per step.
Measured rows: ``predicted`` (cpu kernels), ``measured`` peak RSS of the step in a fresh
process (parameter bytes + VmHWM - RSS before), ``ratio`` predicted / measured,
``tracked`` the tracker on the real tensors (no workspace term).
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
    parser.add_argument("--slabs", action="store_true", help="only the slab step (section 3)")
    parser.add_argument("--slab-sizes", default="64x128x128", help="CPU-measured slab steps")
    parser.add_argument("--slab-vox", type=int, default=16, help="slices per slab (measured)")
    parser.add_argument("--slab-ckpt", default="off,per_block", help="measured checkpointing")
    parser.add_argument("--gpu", metavar="OUT_JSON", help="measure the slab steps on CUDA")
    args = parser.parse_args()
    net = preset("unet3d-nnunet")
    if args.gpu:
        gpu_section(net, args.gpu)
        return
    if args.slabs:
        slab_section(net, args)
        return
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


def _step(shape: tuple[int, ...], **kw: object) -> StepConfig:
    return StepConfig.model_validate({"input_shape_vox": shape, **kw})


def slab_section(net: NetworkConfig, args: argparse.Namespace) -> None:
    """Predict the whole-volume slab step for CUDA; measure slab steps on the CPU."""
    params = count_parameters(net)
    cuda = {"precision": "bf16", "device": "cuda", "foreach": True}
    plain = predict_step(net, _step(FULL, **cuda))
    print(
        f"unet3d-nnunet: {params:,d} parameters; whole volume 160x384x384, batch 1, bf16, cuda"
        f" kernels, Adam foreach; plain step: peak {plain.peak_bytes / GB:.2f} GB, need "
        f"{plain.required_bytes / GB:.2f} GB, {plain.flops / 1e12:.1f} TFLOP"
    )
    print("| slab | ckpt | offload | peak GB | need GB | fits 11 GB | TFLOP | x plain | host GB |")
    print("|---:|---|---|---:|---:|---|---:|---:|---:|")
    rows = [(16, ck, off) for off in (False, True) for ck in ("off", "selective", "per_block")]
    rows += [(8, "per_block", False), (32, "per_block", False)]
    for slab, ck, off in rows:
        e = predict_step(net, _step(FULL, slab_vox=slab, checkpointing=ck, offload=off, **cuda))
        print(
            f"| {slab} | {ck} | {'yes' if off else 'no'} | {e.peak_bytes / GB:.2f} | "
            f"{e.required_bytes / GB:.2f} | {'yes' if e.required_bytes <= 11e9 else 'no'} | "
            f"{e.flops / 1e12:.1f} | {e.flops / plain.flops:.2f} | "
            f"{e.host_offload_bytes / GB:.2f} |",
            flush=True,
        )
    if args.no_measure:
        return
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.slab_sizes.split(",")]
    print(f"\nCPU, fp32, slabs of {args.slab_vox}, {args.threads} threads (real steps):")
    print("| input | ckpt | predicted GB | measured GB | ratio | tracked GB | step s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for shape in sizes:
        for ck in args.slab_ckpt.split(","):
            step = _step(shape, slab_vox=args.slab_vox, checkpointing=ck)
            e = predict_step(net, step)
            m = measure_cpu([(net, step)], threads=args.threads, timeout_s=3000)[0]
            print(
                f"| {'x'.join(map(str, shape))} | {ck} | {e.peak_bytes / GB:.3f} | "
                f"{m.peak_rss_bytes / GB:.3f} | {e.peak_bytes / m.peak_rss_bytes:.3f} | "
                f"{m.tracked_peak_bytes / GB:.3f} | {m.seconds:.0f} |",
                flush=True,
            )


def gpu_section(net: NetworkConfig, out_json: str) -> None:
    """Whole-volume slab steps on a CUDA device: predicted vs ``max_memory_allocated``."""
    import importlib
    import json
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    measure = importlib.import_module("memory_gpu").measure  # as the GPU benchmark measures

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: --gpu measures torch.cuda.max_memory_allocated")
    cuda = {"precision": "bf16", "device": "cuda", "foreach": True}
    cases = [
        ("slab 16, per_block", _step(FULL, slab_vox=16, checkpointing="per_block", **cuda)),
        ("slab 16, offload", _step(FULL, slab_vox=16, offload=True, **cuda)),
        ("slab 8, per_block", _step(FULL, slab_vox=8, checkpointing="per_block", **cuda)),
    ]
    rows = []
    for name, step in cases:
        e = predict_step(net, step)
        row: dict[str, object] = {"case": name, "step": step.model_dump(mode="json")}
        row |= {"predicted_peak_bytes": e.peak_bytes, "required_bytes": e.required_bytes}
        try:
            row.update(measure(net, step, torch.device("cuda")))
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"OOM: {str(exc).splitlines()[0]}"
        measured = row.get("max_memory_allocated")
        ratio = e.peak_bytes / measured if isinstance(measured, int) and measured else None
        row["ratio_predicted_over_measured"] = ratio
        rows.append(row)
        print(json.dumps(row), flush=True)
        info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
        Path(out_json).write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
