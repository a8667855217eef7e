"""Memory of a 3D KL classifier's training step on the whole 160x384x384 knee MRI (issue 16, A).

What it shows:

1. The planner (``kneescope.memory.plan_training``; budget 11 GB = 11e9 B, Adam) on the whole
   160x384x384 volume (a classifier is planned on its whole input: no patches) for the 3D
   classifiers built from MONAI's ResNet (basic blocks, global average pooling, one linear
   layer): the shipped model's network (``mri_kl_network()``: 16/32/64/128 channels, one
   block per stage) and a ResNet-18-width one (64/128/256/512, 2/2/2/2 blocks). For CUDA
   kernels (the 11 GB device) and for CPU kernels: the precision, checkpointing and offload
   the planner chose, and its predicted peak, need (peak + margin) and breakdown.
2. The planner's CPU prediction against a real training step on this CPU at 160x384x384
   (``kneescope.memory.measure_cpu``: a fresh process, peak RSS growth plus the weights), one
   row per precision (``--measure``; the prediction must be within +-10 %). This CPU (AVX2)
   has no native bf16, so the engine trains in fp32 here (``precision = "auto"``) and an
   emulated bf16 step is too slow to measure on the shared cores: fp32 is what is measured.
3. The seed's 3D VGG19 (``vgg19-3d`` preset sized for 160x384x384: 5 stages 64..512 of
   2/2/4/4/4 3^3 convolutions, FC 4096, 4096, 5): its parameters and predicted need (fp32
   and bf16, the planner's answer for 11 GB), for comparison.

Prints a table and writes ``--json`` (default ``bench-out/mri_kl/memory.json``). Usage::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/mri_kl_memory.py --measure fp32
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from kneescope.capabilities.classification.mri_kl import mri_kl_network
from kneescope.io.atomic import atomic_write_text
from kneescope.memory import StepConfig, measure_cpu, predict_step
from kneescope.memory.planner import plan_training
from kneescope.models import NetworkConfig, count_parameters, preset

FULL = (160, 384, 384)
SPACING_MM = (0.7, 0.3646, 0.3646)
BUDGET = 11 * 10**9
GB = 1e9


def resnet18_3d() -> NetworkConfig:
    """A ResNet-18-width 3D classifier (64..512 channels, 2 blocks per stage)."""
    return mri_kl_network().model_copy(
        update={"features": (64, 128, 256, 512), "layers": (2, 2, 2, 2)}
    )


def _gb(b: dict[str, int]) -> dict[str, float]:
    return {k: round(v / GB, 3) for k, v in b.items()}


def plan_rows(name: str, net: NetworkConfig) -> list[dict[str, Any]]:
    """The planner's whole-volume answer for CUDA (bf16 first, as on an 11 GB GPU), CPU, and
    CPU in fp32 only (the engine's ``auto`` precision on a CPU without native bf16, as here)."""
    rows = []
    runs: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("cuda", "cuda", ("bf16", "fp32")),
        ("cpu", "cpu", ("bf16", "fp32")),
        ("cpu-fp32", "cpu", ("fp32",)),
    ]
    for label, device, precisions in runs:
        plan = plan_training(
            net,
            FULL,
            SPACING_MM,
            BUDGET,
            device=device,
            precisions=precisions,
            effective_batch=1,
        )
        c = plan.full_volume
        row: dict[str, Any] = {
            "network": name,
            "parameters": count_parameters(net),
            "device": label,
            "fits_11GB": c is not None,
        }
        if c is not None:
            row.update(
                precision=c.precision,
                checkpointing=c.checkpointing,
                offload=c.offload,
                batch=c.batch_size,
                predicted_peak_gb=round(c.peak_bytes / GB, 3),
                predicted_need_gb=round(c.required_bytes / GB, 3),
                breakdown_gb=_gb(c.breakdown_bytes),
                tflop_per_step=round(c.flops / 1e12, 3),
            )
        elif plan.sharding is not None:
            row["planner"] = plan.sharding.message
        rows.append(row)
    return rows


def vgg_rows() -> list[dict[str, Any]]:
    net = preset("vgg19-3d", FULL)
    rows = []
    for precision in ("fp32", "bf16"):
        step = StepConfig(input_shape_vox=FULL, precision=precision, device="cuda", foreach=True)
        e = predict_step(net, step)
        rows.append(
            {
                "network": "seed VGG19-3D",
                "parameters": e.parameters,
                "device": "cuda",
                "precision": precision,
                "checkpointing": "off",
                "predicted_peak_gb": round(e.peak_bytes / GB, 2),
                "predicted_need_gb": round(e.required_bytes / GB, 2),
                "breakdown_gb": _gb(e.breakdown_bytes),
                "tflop_per_step": round(e.flops / 1e12, 2),
            }
        )
    plan = plan_training(net, FULL, SPACING_MM, BUDGET, device="cuda", effective_batch=1)
    rows.append(
        {
            "network": "seed VGG19-3D",
            "device": "cuda",
            "fits_11GB": plan.full_volume is not None,
            "planner": plan.sharding.message if plan.sharding else "",
        }
    )
    return rows


def measure_rows(net: NetworkConfig, precisions: list[str], threads: int) -> list[dict[str, Any]]:
    rows = []
    for precision in precisions:
        step = StepConfig(input_shape_vox=FULL, precision=precision, device="cpu")  # type: ignore[arg-type]
        e = predict_step(net, step)
        m = measure_cpu([(net, step)], threads=threads, timeout_s=3000)[0]
        rows.append(
            {
                "network": "mri_kl_network",
                "input": "x".join(map(str, FULL)),
                "precision": precision,
                "checkpointing": "off",
                "predicted_peak_gb": round(e.peak_bytes / GB, 3),
                "measured_peak_rss_gb": round(m.peak_rss_bytes / GB, 3),
                "measured_tracked_gb": round(m.tracked_peak_bytes / GB, 3),
                "ratio_predicted_to_measured": round(e.peak_bytes / m.peak_rss_bytes, 3),
                "step_s": round(m.seconds, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--measure",
        default="",
        help="precisions to measure on this CPU, e.g. fp32 (bf16 is emulated without native "
        "CPU support: very slow)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench-out/mri_kl/memory.json"))
    args = parser.parse_args()
    small = mri_kl_network()
    result: dict[str, Any] = {
        "input_vox": FULL,
        "voxels": math.prod(FULL),
        "budget_bytes": BUDGET,
        "plans": plan_rows("mri_kl_network", small) + plan_rows("resnet18-3d", resnet18_3d()),
        "vgg19_3d": vgg_rows(),
    }
    print(f"Whole volume {'x'.join(map(str, FULL))}, Adam, batch 1, budget 11 GB (1e9 B)")
    print(f"{'network':16} {'params':>10} {'device':6} {'choice':28} {'peak GB':>8} {'need GB':>8}")
    for row in result["plans"] + result["vgg19_3d"]:
        if "predicted_peak_gb" in row:
            choice = f"{row['precision']} ckpt={row['checkpointing']}"
            if "offload" in row:
                choice += f" offload={row['offload']}"
            print(
                f"{row['network']:16} {row.get('parameters', 0):>10,d} {row['device']:6} "
                f"{choice:28} {row['predicted_peak_gb']:>8.2f} {row['predicted_need_gb']:>8.2f}"
            )
        else:
            print(f"{row['network']:16} {'':>10} {row['device']:6} does not fit: {row['planner']}")
    precisions = [p for p in args.measure.split(",") if p]
    if precisions:
        result["measured_cpu"] = measure_rows(small, precisions, args.threads)
        print("\nCPU training step at 160x384x384 (real, fresh process):")
        for row in result["measured_cpu"]:
            print(
                f"  {row['precision']}: predicted {row['predicted_peak_gb']:.3f} GB, measured "
                f"RSS {row['measured_peak_rss_gb']:.3f} GB, ratio "
                f"{row['ratio_predicted_to_measured']:.3f}, step {row['step_s']:.0f} s"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
