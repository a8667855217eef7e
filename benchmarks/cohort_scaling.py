"""Scaling: Dask LocalCluster with 2 single-thread worker processes vs in-process, 1 thread.

The step is CPU-bound pure Python (``burn_cpu``, holds the GIL). Each configuration runs the
same items ``--repeat`` times; throughput is items per second over the run's busy span (first
item start to last item finish, from the manifest) and over the whole wall time including
cluster start-up. Target: ratio >= 1.7 on 2 cores. The machine may be shared: the load
average is printed beside every measurement.

    .venv/bin/python benchmarks/cohort_scaling.py [--items 16] [--iterations 3000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from kneescope.cohort.item import Item
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.workspace import Workspace


def one_run(folder: Path, kind: str, n: int, iterations: int) -> dict[str, float]:
    executor = (
        {"kind": "local"}
        if kind == "local"
        else {"kind": "dask", "workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"}
    )
    config = PipelineConfig.model_validate(
        {
            "name": f"scaling-{kind}",
            "items": {"rows": [{"item_id": "unused"}]},
            "steps": [{"name": "burn_cpu", "options": {"iterations": iterations}}],
            "executor": executor,
        }
    )
    items = [Item(f"i{i:03d}") for i in range(n)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = run_pipeline(config, Workspace.resolve(folder), items=items)
    wall_s = time.perf_counter() - start
    with sqlite3.connect(result.run_dir / "manifest.sqlite") as db:
        first, last = db.execute("SELECT MIN(started_at), MAX(finished_at) FROM items").fetchone()
    assert result.done == n, result
    return {
        "busy_items_per_s": n / (last - first),
        "wall_items_per_s": n / wall_s,
        "wall_s": wall_s,
        "load_before": load_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"local": [], "dask": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for kind in ("local", "dask"):
                runs[kind].append(
                    one_run(Path(tmp) / f"{kind}{r}", kind, args.items, args.iterations)
                )
    ratios_busy = [
        dk["busy_items_per_s"] / lo["busy_items_per_s"]
        for lo, dk in zip(runs["local"], runs["dask"], strict=True)
    ]
    ratios_wall = [
        dk["wall_items_per_s"] / lo["wall_items_per_s"]
        for lo, dk in zip(runs["local"], runs["dask"], strict=True)
    ]
    print(
        json.dumps(
            {
                "items": args.items,
                "iterations": args.iterations,
                "cpu_count": os.cpu_count(),
                "runs": runs,
                "ratio_busy_per_repeat": ratios_busy,
                "ratio_wall_per_repeat": ratios_wall,
                "ratio_busy_median": statistics.median(ratios_busy),
                "ratio_busy_best": max(ratios_busy),
                "ratio_wall_median": statistics.median(ratios_wall),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
