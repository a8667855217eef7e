"""End-to-end cohort throughput: synthetic DESS volumes -> load -> segment -> measure.

Renders ``--n`` synthetic knees (``--size full`` = OAI SAG_3D_DESS 160x384x384, or ``small``)
once into ``--data`` and runs them through ``kneescope.cohort`` on the chosen executor. Reports
volumes per hour, the mean seconds per step and per phase (read, preprocess, infer,
postprocess, measure, write) and the peak RSS of every worker process.

With ``--model`` (a trained kneescope model file) one pipeline runs
``load_volume -> segment -> measure``. Without one, a randomly initialised ``unet3d-small``
(the same network, so the same inference cost) segments, and biomarkers are measured on the
synthetic truth label maps in a second pipeline (``load_labels -> measure``), because random
weights give label maps that cannot be measured; volumes per hour then counts both.

    .venv/bin/python benchmarks/cohort_throughput.py --n 4 --size full --executor dask
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.io import write_nifti
from kneescope.workspace import Workspace


def render_one(data: Path, i: int, size_name: str) -> tuple[Path, Path]:
    """Write knee i as images/knee<i>.nii.gz and labels/knee<i>.nii.gz (kept for reuse)."""
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import FULL, SMALL, sample_knee_params

    size = FULL if size_name == "full" else SMALL
    image_path = data / size_name / "images" / f"knee{i:03d}.nii.gz"
    label_path = data / size_name / "labels" / f"knee{i:03d}.nii.gz"
    if not (image_path.exists() and label_path.exists()):
        side = "right" if i % 2 == 0 else "left"
        params = sample_knee_params(np.random.default_rng(1000 + i), side=side, klg=i % 5)
        sample = render_knee(params, size)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        write_nifti(sample.image, image_path)
        write_nifti(sample.labels, label_path)
    return image_path, label_path


def render(data: Path, n: int, size_name: str, jobs: int) -> tuple[list[Path], list[Path]]:
    """All n knees, rendered in ``jobs`` processes."""
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            pairs = list(pool.map(render_one, [data] * n, range(n), [size_name] * n))
    else:
        pairs = [render_one(data, i, size_name) for i in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def random_model(path: Path, size_name: str, roi: tuple[int, int, int]) -> Path:
    """An untrained unet3d-small model file on the synthetic scans' native spacing."""
    import torch

    from kneescope.core.labels import KNEE_LABELS
    from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
    from kneescope.models import build_network
    from kneescope.models.registry import preset
    from kneescope.synth.params import FULL, SMALL

    size = FULL if size_name == "full" else SMALL
    network = preset("unet3d-small").model_copy(update={"out_channels": 10})
    torch.manual_seed(0)
    spec = ModelSpec(
        network=network,
        mode="3d",
        labels=dict(KNEE_LABELS.labels),
        spacing_mm=size.spacing_mm,
        orientation="RAS",
        roi_size_vox=roi,
    )
    model = SegmentationModel(spec=spec, state_dict=build_network(network).state_dict())
    return save_model(model, path)


def run(
    name: str,
    ws: Workspace,
    rows: list[dict[str, str]],
    steps: list[dict[str, Any]],
    executor: dict[str, Any],
) -> tuple[float, pd.DataFrame]:
    config = PipelineConfig.model_validate(
        {"name": name, "items": {"rows": rows}, "steps": steps, "executor": executor}
    )
    start = time.perf_counter()
    result = run_pipeline(config, ws)
    wall = time.perf_counter() - start
    table = pd.read_parquet(result.results_path)
    if result.failed:
        raise SystemExit(f"{name}: {result.failed} items failed; see kneescope status")
    return wall, table


def summary(table: pd.DataFrame) -> dict[str, Any]:
    steps = {
        c[len("time_step_") : -2]: float(table[c].mean())
        for c in table
        if c.startswith("time_step_")
    }
    phases = {
        c[len("time_") : -2]: float(table[c].mean())
        for c in table
        if c.startswith("time_") and not c.startswith(("time_step_", "time_total"))
    }
    return {
        "mean_step_s": steps,
        "mean_phase_s": phases,
        "worker_peak_rss_mib": float(table["worker_peak_rss_mib"].max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--size", choices=["full", "small"], default="full")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--roi", default="64,128,128", help="window of the random model")
    parser.add_argument("--executor", choices=["local", "dask"], default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GiB")
    parser.add_argument("--data", type=Path, default=Path("bench-out/cohort_throughput"))
    parser.add_argument("--device", default="cpu", help="segment on cpu, cuda, cuda:N")
    parser.add_argument("--render-jobs", type=int, default=1)
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    args.data = args.data.absolute()  # the run config resolves paths from elsewhere
    images, labels = render(args.data, args.n, args.size, args.render_jobs)
    if args.render_only:
        return
    executor: dict[str, Any] = (
        {"kind": "local"}
        if args.executor == "local"
        else {
            "kind": "dask",
            "workers": args.workers,
            "threads_per_worker": 1,
            "memory_limit": args.memory_limit,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.resolve(Path(tmp) / "ws")
        trained = args.model is not None
        model = args.model or random_model(
            Path(tmp) / "random.pt", args.size, tuple(int(x) for x in args.roi.split(","))
        )
        segment = {"name": "segment", "options": {"model": str(model), "device": args.device}}
        rows = [
            {"item_id": p.name, "side": "right" if i % 2 == 0 else "left", "path": str(p)}
            for i, p in enumerate(images)
        ]
        steps = [{"name": "load_volume"}, segment]
        if trained:
            steps.append({"name": "measure"})
        wall_seg, seg_table = run("segment", ws, rows, [*steps, {"name": "peak_rss"}], executor)
        report: dict[str, Any] = {
            "n": args.n,
            "size": args.size,
            "device": args.device,
            "executor": executor,
            "trained_model": trained,
            "segment_pipeline": {"wall_s": wall_seg, **summary(seg_table)},
        }
        wall = wall_seg
        if not trained:
            label_rows = [{**r, "path": str(p)} for r, p in zip(rows, labels, strict=True)]
            wall_measure, m_table = run(
                "measure",
                ws,
                label_rows,
                [{"name": "load_labels"}, {"name": "measure"}, {"name": "peak_rss"}],
                executor,
            )
            report["measure_pipeline"] = {"wall_s": wall_measure, **summary(m_table)}
            wall += wall_measure
        report["volumes_per_hour"] = 3600.0 * args.n / wall
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
