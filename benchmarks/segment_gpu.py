"""Volumes per second for `kneescope segment` over many volumes: one by one vs pipelined.

For each model (default: the shipped 2D model ``knee-seg-2d``; ``--model`` repeatable, e.g.
the 3D benchmark model of benchmarks/bench_3d_model.py) a :class:`Segmenter` segments full-size
synthetic OAI DESS knees (160x384x384, 0.7 x 0.365 x 0.365 mm; development seeds 190100+,
both sides, rendered once in the background at the start) from memory to label maps on the
input grid, on ``--device`` in ``--precision``:

- ``sequential``: :func:`kneescope.inference.pipeline.segment_many` with ``overlap=False``:
  prepare -> infer -> finish of one volume after the other (= ``Segmenter.segment``);
- ``pipelined_fK``: the same with the phases overlapped (prepare of n+1 and finish of n-1
  while the network runs on n) and K finishing threads (``--finish-workers``).

Modes run interleaved (seq, pipe, seq, pipe, ...) ``--repeats`` times over ``--rounds`` passes
of the rendered knees each. Reported per model and mode: volumes per second (best and median
of the repeats), mean seconds per phase per volume, the process's CPU seconds per volume
(host work: what an 8-GPU node's CPUs must supply), peak GPU memory, and a check that the
pipelined labels equal the sequential ones voxel for voxel; per model the Dice of each
structure against the synthetic truth (first knee). Load (``os.getloadavg``) per repeat.

GPU (a lent CUDA machine; benchmarks/gpu_session.sh runs it; ~3-4 min for both models):

    python benchmarks/segment_gpu.py --device cuda --precision bf16 --knees 4 --rounds 2 \\
        --repeats 3 --finish-workers 1 4 --json OUT/segment_gpu.json [--model M3D.pt]

CPU, 2 cores (the in-process overlap on this machine; ~6 min quiet with 2 knees):

    nice .venv/bin/python benchmarks/segment_gpu.py --device cpu --precision fp32 --threads 2 \\
        --knees 2 --rounds 1 --repeats 2 --finish-workers 1

Prints one JSON object (and writes it to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

SEED = 190100
"""First seed of the rendered knees (development seeds: not the training bank 500000-500015,
not the locked test seeds >= 9,100,000)."""


def render(index: int, size: str = "full") -> tuple[Any, Any, str]:
    """Knee ``index`` (``size`` full: 160x384x384; small: 48x128x128, for smoke tests):
    ((image array, affine), truth label array, side)."""
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import FULL, SMALL, sample_knee_params

    side: Literal["right", "left"] = "right" if index % 2 == 0 else "left"
    params = sample_knee_params(np.random.default_rng(SEED + index), side=side, klg=index % 5)
    sample = render_knee(params, FULL if size == "full" else SMALL)
    # arrays and affine only: a Volume's read-only metadata does not pickle
    return (sample.image.array, sample.image.affine_ras), sample.labels.array, side


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_mode(
    segmenter: Any, knees: list[tuple[Any, Any, str]], rounds: int, overlap: bool, finish: int
) -> dict[str, Any]:
    """One timed pass: ``rounds`` x every knee through segment_many; returns figures and the
    label maps of the first round."""
    import torch

    from kneescope.inference.pipeline import segment_many

    cuda = str(segmenter.device).startswith("cuda")
    order = [i for _ in range(rounds) for i in range(len(knees))]
    phases: dict[str, float] = {}
    labels: dict[int, np.ndarray] = {}
    if cuda:
        torch.cuda.synchronize()
    load = os.getloadavg()[0]
    c0, t0 = cpu_s(), time.perf_counter()
    for count, result in enumerate(
        segment_many(
            segmenter,
            order,
            lambda i: (knees[i][0], knees[i][2]),
            overlap=overlap,
            finish_workers=finish,
        )
    ):
        if not result.ok:
            raise SystemExit(f"knee {result.item}: {result.error}")
        for k, v in result.seconds.items():
            phases[k] = phases.get(k, 0.0) + v
        if count < len(knees):
            labels[result.item] = result.segmentation.labels.array
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    n = len(order)
    return {
        "volumes": n,
        "wall_s": wall,
        "volumes_per_s": n / wall,
        "cpu_s_per_volume": (cpu_s() - c0) / n,
        "phase_s_per_volume": {k: v / n for k, v in phases.items()},
        "load_1min": load,
        "labels": labels,
    }


def bench_model(
    model_path: Path, knees: list[tuple[Any, Any, str]], args: argparse.Namespace
) -> dict[str, Any]:
    import torch

    from kneescope.inference.evaluation import dice_per_label
    from kneescope.inference.segmenter import SegmentConfig, Segmenter

    cuda = args.device.startswith("cuda")
    t0 = time.perf_counter()
    segmenter = Segmenter(model_path, SegmentConfig(device=args.device, precision=args.precision))
    load_s = time.perf_counter() - t0
    segmenter.segment(knees[0][0], side=knees[0][2])  # warm-up (autotuning, allocator)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    modes = {"sequential": (False, 1)} | {f"pipelined_f{k}": (True, k) for k in args.finish_workers}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    reference: dict[int, np.ndarray] = {}
    same: dict[str, bool] = {}
    for _ in range(args.repeats):
        for mode, (overlap, finish) in modes.items():
            run = run_mode(segmenter, knees, args.rounds, overlap, finish)
            maps = run.pop("labels")
            if mode == "sequential" and not reference:
                reference = maps
            elif mode != "sequential":
                equal = all(np.array_equal(maps[i], reference[i]) for i in reference)
                same[mode] = same.get(mode, True) and equal
            runs[mode].append(run)
    spec = segmenter.model.spec
    truth = dice_per_label(reference[0], knees[0][1], labels=sorted(spec.labels))
    out: dict[str, Any] = {
        "model": str(model_path),
        "mode_of_model": spec.mode,
        "window": list(segmenter.roi),
        "precision": segmenter.precision_name,
        "model_load_s": load_s,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
        "labels_equal_to_sequential": same,
        "dice_vs_truth_knee0": {spec.labels[c]: round(d, 4) for c, d in truth.items()},
        "modes": {},
    }
    for mode, rs in runs.items():
        rates = [r["volumes_per_s"] for r in rs]
        best = max(rs, key=lambda r: r["volumes_per_s"])
        out["modes"][mode] = {
            "volumes_per_s_best": round(max(rates), 4),
            "volumes_per_s_median": round(statistics.median(rates), 4),
            "volumes_per_s_all": [round(r, 4) for r in rates],
            "cpu_s_per_volume_best_run": round(best["cpu_s_per_volume"], 3),
            "phase_s_per_volume_best_run": {
                k: round(v, 3) for k, v in best["phase_s_per_volume"].items()
            },
            "load_1min": [round(r["load_1min"], 2) for r in rs],
        }
    seq = out["modes"]["sequential"]["volumes_per_s_median"]
    for mode in out["modes"]:
        out["modes"][mode]["speed_vs_sequential_median"] = round(
            out["modes"][mode]["volumes_per_s_median"] / seq, 3
        )
    del segmenter
    if cuda:
        torch.cuda.empty_cache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--size", choices=["full", "small"], default="full")
    parser.add_argument("--knees", type=int, default=4, help="distinct knees rendered")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the knees per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--finish-workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--render-jobs", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: use --device cpu, or run on a GPU machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    from kneescope.models.pretrained import DEFAULT_MODEL, resolve_model

    models = args.model or [resolve_model(DEFAULT_MODEL, None)]
    jobs = args.render_jobs or min(args.knees, max(1, (os.cpu_count() or 2) // 2))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        rendered = list(pool.map(render, range(args.knees), [args.size] * args.knees))
    from kneescope.core import Volume

    knees = [(Volume(image, affine), truth, side) for (image, affine), truth, side in rendered]
    render_s = time.perf_counter() - t0
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "volume_shape": list(knees[0][0].shape),
        "knees": args.knees,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "render_s": round(render_s, 1),
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "models": [bench_model(Path(m), knees, args) for m in models],
        "load_end": [round(x, 2) for x in os.getloadavg()],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)


if __name__ == "__main__":
    main()
