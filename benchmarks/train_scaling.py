"""Scaling efficiency of data-parallel training on CPU: 1 rank x 1 thread vs N ranks x 1 thread.

Both runs do the same global work: the same compute-bound 3D network (a MONAI U-Net), the
same global batch and the same iterations, trained by the engine (``kneescope.training.engine.
fit``) on synthetic volumes; the N ranks each take 1/N of every batch (gloo, DDP). The time is
the engine's training loop (``FitResult.seconds``: process start, imports and network build
excluded), the best of ``--repeats`` runs. With t1 the 1-rank time and tN the N-rank time:
``speedup = t1 / tN`` and ``efficiency = t1 / (N * tN)`` (the share of N cores' time that
does useful work: 1.0 perfect; the target is >= 0.85 on 2 ranks). The strongest one-process
baseline on the same cores, 1 rank with N threads, is timed too
(``speedup_vs_1_rank_N_threads``: what N ranks gain over simply giving one process every core).

Run it on a quiet machine with at least N free cores (numbers from a shared machine say
nothing):

    python benchmarks/train_scaling.py --repeats 3     # 2 ranks, the default 3D config
    python benchmarks/train_scaling.py --nproc 2 --iterations 2 --patch 16 --batch 2  # smoke

It prints one JSON object (times in s, losses of both runs, efficiency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from kneescope.models import NetworkConfig
from kneescope.training.task import Metrics, TaskBatch


class VolumeTask:
    """Synthetic 3D two-class segmentation: noise volumes, the foreground is where a smoothed
    copy of the noise is positive. Deterministic in (index, size)."""

    kind = "scaling-benchmark"

    def __init__(self, patch: int, features: tuple[int, ...]) -> None:
        self.patch = patch
        self.network = NetworkConfig(
            name="unet",
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            features=features,
            strides=(2,) * (len(features) - 1),
        )
        self.data_fingerprint = f"scaling-{patch}-{'-'.join(map(str, features))}"
        self.train_size = 1_000_000
        self.val_size = 0  # nothing to validate: the benchmark times training only

    def batch(self, index: int, size: int) -> TaskBatch:
        gen = torch.Generator().manual_seed(index)
        x = torch.randn((size, 1, self.patch, self.patch, self.patch), generator=gen)
        smooth = functional.avg_pool3d(x, 5, stride=1, padding=2)
        return TaskBatch(inputs=x, targets=(smooth > 0).long()[:, 0])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs, targets)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        return Metrics(score=0.0)

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        return {"benchmark": True}


def _rank(args: argparse.Namespace) -> int:
    """One rank: train and (rank 0) write the timing as JSON to ``args.out``."""
    from kneescope.training.distributed import rank_guard, shutdown, world_from_env
    from kneescope.training.engine import fit
    from kneescope.training.engine_config import EngineConfig

    config = EngineConfig(
        iterations=args.iterations,
        batch_size=args.batch,
        precision="fp32",
        threads=args.threads,
        validate_every=10**6,
        checkpoint_every=10**6,
        seed=0,
    )
    world = world_from_env()
    with rank_guard(world):
        result = fit(
            VolumeTask(args.patch, tuple(args.features)),
            config,
            run_dir=Path(args.run_dir),
            model_path=None,
            world=world,
        )
    if world.is_main:
        Path(args.out).write_text(
            json.dumps(
                {
                    "ranks": world.size,
                    "seconds": result.seconds,
                    "losses": [row["loss"] for row in result.history],
                }
            )
        )
    shutdown(world)
    return 0


def _run(
    nproc: int, args: argparse.Namespace, folder: Path, tag: str, threads: int = 1
) -> dict[str, Any]:
    from kneescope.training.launch import launch_local

    out = folder / f"{tag}.json"
    rank_args = [
        __file__,
        "--as-rank",
        "--run-dir",
        str(folder / tag),
        "--out",
        str(out),
        "--iterations",
        str(args.iterations),
        "--batch",
        str(args.batch),
        "--patch",
        str(args.patch),
        "--features",
        *map(str, args.features),
        "--threads",
        str(threads),
    ]
    code = launch_local(rank_args, nproc, program=[sys.executable], threads=threads)
    if code:
        raise SystemExit(f"the {nproc}-rank run failed (exit code {code})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nproc", type=int, default=2, help="ranks of the parallel run")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8, help="global batch (a multiple of N)")
    parser.add_argument("--patch", type=int, default=64, help="cube side of a sample (voxels)")
    parser.add_argument("--features", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs each")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--as-rank", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_rank:
        return _rank(args)
    if args.batch % args.nproc:
        parser.error(f"--batch {args.batch} must be a multiple of --nproc {args.nproc}")
    with tempfile.TemporaryDirectory(prefix="kneescope-scaling-") as tmp:
        folder = Path(tmp)
        ones = [_run(1, args, folder, f"one-{i}") for i in range(args.repeats)]
        many = [_run(args.nproc, args, folder, f"many-{i}") for i in range(args.repeats)]
        # the strongest one-process baseline on the same cores: 1 rank with N threads
        wide = [_run(1, args, folder, f"wide-{i}", threads=args.nproc) for i in range(args.repeats)]
    t1 = min(r["seconds"] for r in ones)
    t1_wide = min(r["seconds"] for r in wide)
    tn = min(r["seconds"] for r in many)
    losses_1, losses_n = ones[0]["losses"], many[0]["losses"]
    max_loss_diff = max(abs(a - b) for a, b in zip(losses_1, losses_n, strict=True))
    speedup = t1 / tn
    report = {
        "benchmark": "train_scaling",
        "network": f"3D U-Net features {args.features}",
        "patch_vox": [args.patch] * 3,
        "global_batch": args.batch,
        "iterations": args.iterations,
        "ranks": args.nproc,
        "threads_per_rank": 1,
        "backend": "gloo",
        "t1_s": round(t1, 3),
        "tN_s": round(tn, 3),
        "speedup": round(speedup, 3),
        "efficiency": round(speedup / args.nproc, 3),
        "t1_threads_N_s": round(t1_wide, 3),
        "speedup_vs_1_rank_N_threads": round(t1_wide / tn, 3),
        "max_loss_difference": max_loss_diff,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
