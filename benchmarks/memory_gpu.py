"""Predicted vs measured (torch.cuda.max_memory_allocated) peak memory on a CUDA device.

For a few configurations, including the goal (the nnU-Net-class 3D U-Net trained on
the whole 160x384x384 volume, batch 1, within 11 GB, as planned by kneescope), this script
predicts the peak of a steady-state training step (``kneescope.memory.predict_step`` with
``device="cuda"``: fake tensors, nothing allocated) and measures it: one warm-up step, then
``torch.cuda.reset_peak_memory_stats()`` and the same step, ``max_memory_allocated()``.
Offloaded steps use ``torch.autograd.graph.save_on_cpu(pin_memory=True)``. Prints a table
and writes JSON after every case (the 11 GB plan's cases first). Should finish in under 2
minutes on an H100/H200 (64 s on an H200 before the near-full case was added); no new
case starts after ``--max-seconds`` (70 s). Usage::

    python benchmarks/memory_gpu.py results.json          # on a CUDA machine
    python benchmarks/memory_gpu.py out.json --smoke      # tiny configs, any device (test)
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from typing import Any

import torch

from kneescope.memory import AllocationTracker, StepConfig, predict_step
from kneescope.memory.planner import patch_ladder, plan_training
from kneescope.memory.step import run_steps
from kneescope.models import NetworkConfig, build_network, divisor, preset

Case = tuple[str, NetworkConfig, StepConfig]
NNUNET_SPACING_MM = (0.7, 0.365, 0.365)


def _step(shape: tuple[int, ...], **kw: Any) -> StepConfig:
    return StepConfig(input_shape_vox=shape, device="cuda", foreach=True, **kw)


def largest_offloaded_volume(network: NetworkConfig) -> tuple[int, ...] | None:
    """First rung of the planner's patch ladder from 160x384x384 (bf16, offload, no
    checkpointing) whose need fits 11 GB; at most 8 rungs are tried (a few seconds)."""
    ladder = patch_ladder((160, 384, 384), NNUNET_SPACING_MM, divisor(network), (64, 64, 64))
    for shape in ladder[:8]:
        step = _step(shape, precision="bf16", offload=True)
        if predict_step(network, step).required_bytes <= 11 * 10**9:
            return shape
    return None


def cases(smoke: bool) -> list[Case]:
    if smoke:
        small = preset("unet3d-small")
        return [
            ("unet3d-small fp32", small, _step((32, 32, 32))),
            ("unet3d-small bf16 per_block", small, _step((32, 32, 32), precision="bf16",
                                                          checkpointing="per_block")),
        ]  # fmt: skip
    nnunet = preset("unet3d-nnunet")
    plan = plan_training(nnunet, (160, 384, 384), NNUNET_SPACING_MM, 11 * 10**9)
    planned: list[Case] = []
    if plan.candidates:
        c = plan.best
        planned.append(
            (
                f"11GB plan best patch {'x'.join(map(str, c.patch_size))} b{c.batch_size}",
                nnunet,
                _step(c.patch_size, batch_size=c.batch_size, precision=c.precision,
                      checkpointing=c.checkpointing, offload=c.offload),
            )
        )  # fmt: skip
    full = plan.full_volume
    if full is not None:
        planned.append(
            (
                f"11GB plan FULL 160x384x384 {full.precision} ckpt={full.checkpointing} "
                f"offload={full.offload}",
                nnunet,
                _step(full.patch_size, precision=full.precision,
                      checkpointing=full.checkpointing, offload=full.offload),
            )
        )  # fmt: skip
    else:  # the whole volume does not fit: the largest offloaded volume that does
        near = largest_offloaded_volume(nnunet)
        if near is not None:
            planned.append(
                (f"11GB plan NEAR-FULL {'x'.join(map(str, near))} bf16 ckpt=off offload=True",
                 nnunet, _step(near, precision="bf16", offload=True))
            )  # fmt: skip
    # the former (unsafe) whole-volume plan: predicted 8.80 GB before, 13.28 GB measured
    planned.append(("FULL 160x384x384 bf16 ckpt=off offload=True (old 11GB plan)", nnunet,
                    _step((160, 384, 384), precision="bf16", offload=True)))  # fmt: skip
    planned.append(("nnunet FULL 160x384x384 bf16 no offload", nnunet,
                _step((160, 384, 384), precision="bf16")))  # fmt: skip
    others: list[Case] = [
        ("unet3d-small 128^3 fp32", preset("unet3d-small"), _step((128, 128, 128))),
        ("nnunet 128^3 fp32", nnunet, _step((128, 128, 128))),
        ("nnunet 128^3 bf16", nnunet, _step((128, 128, 128), precision="bf16")),
        ("nnunet 128^3 bf16 per_block", nnunet,
         _step((128, 128, 128), precision="bf16", checkpointing="per_block")),
        ("nnunet 128^3 bf16 selective", nnunet,
         _step((128, 128, 128), precision="bf16", checkpointing="selective")),
        ("nnunet 128^3 bf16 offload", nnunet,
         _step((128, 128, 128), precision="bf16", offload=True)),
        ("vgg19-2d 224 fp32 (seed 2.3 GB)", preset("vgg19-2d", (224, 224)), _step((224, 224))),
        ("vgg19-2d 512 fp32 (seed 9.1 GB)", preset("vgg19-2d", (512, 512)), _step((512, 512))),
        ("vgg19-3d 128^3 fp32 (seed 8 GB)", preset("vgg19-3d", (128, 128, 128)),
         _step((128, 128, 128))),
    ]  # fmt: skip
    # The 11 GB plan first: if a time limit stops the run, its rows are already written.
    order = {"11GB plan FULL": 0, "11GB plan NEAR-FULL": 0, "old 11GB plan": 1, "best": 2}
    planned.sort(key=lambda case: min([v for k, v in order.items() if k in case[0]] or [3]))
    return [*planned, *others]


def measure(network: NetworkConfig, step: StepConfig, device: torch.device) -> dict[str, Any]:
    """One warm-up step, then the measured steady-state step."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    net = build_network(network).to(device)
    args = (network.name == "vgg_classifier", network.out_channels, network.in_channels)
    offload = "save_on_cpu" if cuda else "none"
    run_steps(net, step, *args, AllocationTracker(workspace=False), device, offload,
              count_flops=False)  # fmt: skip
    for p in net.parameters():
        p.grad = None
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tracker = AllocationTracker(workspace=False)
    start = time.perf_counter()
    run_steps(net, step, *args, tracker, device, offload, count_flops=False)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "max_memory_allocated": torch.cuda.max_memory_allocated() if cuda else None,
        "max_memory_reserved": torch.cuda.max_memory_reserved() if cuda else None,
        "tracked_peak_bytes": tracker.peak_bytes,
        "step_seconds": seconds,
    }
    del net
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_json", help="where to write the results")
    parser.add_argument("--smoke", action="store_true", help="tiny configs; CPU allowed")
    parser.add_argument(
        "--max-seconds", type=float, default=70.0, help="start no new case after this"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.smoke:
        sys.exit("no CUDA device: this benchmark measures torch.cuda.max_memory_allocated")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    rows = []
    print(f"{'case':58} {'pred GB':>8} {'need GB':>8} {'meas GB':>8} {'ratio':>6} "
          f"{'reserved':>8} {'tracked':>8} {'step s':>7}")  # fmt: skip
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "rows": rows,
    }
    for name, network, step in cases(args.smoke):
        if time.perf_counter() - started > args.max_seconds:
            print(f"time limit: skipped {name}", flush=True)
            continue
        est = predict_step(network, step)
        row: dict[str, Any] = {
            "case": name,
            "network": network.model_dump(mode="json"),
            "step": step.model_dump(mode="json"),
            "predicted_peak_bytes": est.peak_bytes,
            "predicted_required_bytes": est.required_bytes,
            "predicted_breakdown_bytes": est.breakdown_bytes,
            "host_offload_bytes": est.host_offload_bytes,
            "predict_seconds": est.seconds,
        }
        try:
            row.update(measure(network, step, device))
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"OOM: {str(exc).splitlines()[0]}"
            gc.collect()
            torch.cuda.empty_cache()
        measured = row.get("max_memory_allocated") or row.get("tracked_peak_bytes")
        ratio = est.peak_bytes / measured if measured else float("nan")
        row["ratio_predicted_over_measured"] = ratio
        rows.append(row)
        reserved = row.get("max_memory_reserved") or 0
        print(
            f"{name[:58]:58} {est.peak_bytes / 1e9:8.2f} {est.required_bytes / 1e9:8.2f} "
            f"{(measured or 0) / 1e9:8.2f} {ratio:6.3f} {reserved / 1e9:8.2f} "
            f"{row.get('tracked_peak_bytes', 0) / 1e9:8.2f} {row.get('step_seconds', 0):7.2f}"
            + (f"  {row['error']}" if "error" in row else ""),
            flush=True,
        )
        info["seconds"] = time.perf_counter() - started
        with open(args.out_json, "w", encoding="utf-8") as fh:  # after every row
            json.dump(info, fh, indent=2)
    info["seconds"] = time.perf_counter() - started
    with open(args.out_json, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
    print(f"total {info['seconds']:.0f} s; wrote {args.out_json}")


if __name__ == "__main__":
    main()
