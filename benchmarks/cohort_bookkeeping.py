"""Cohort-scale bookkeeping: 20,000 tiny items through a trivial step.

Measures (1) the manifest's own cost per item (sync + mark running + record, on the real
SQLite file, no executor), (2) the whole driver's overhead per item in a real run with the
``noop`` step (in-process executor; ``--executor dask`` a LocalCluster whose scheduler lives
in the driver process; ``address`` a LocalCluster in another process), (3) a re-run where
every item is skipped, and (4) the driver's RSS sampled during the run (flat = no growth).

    .venv/bin/python benchmarks/cohort_bookkeeping.py [--items 20000] [--executor local]

Prints one JSON object. Targets: manifest overhead < 10 ms per item; flat driver memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from kneescope.cohort.item import Item
from kneescope.cohort.item_task import TaskOutcome
from kneescope.cohort.manifest import Manifest
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import Progress, run_pipeline
from kneescope.workspace import Workspace

PROVENANCE = {"kneescope_version": "bench", "config_hash": "c" * 16, "model_hash": ""}


def tiny_items(n: int) -> Iterator[Item]:
    for i in range(n):
        side = "right" if i % 2 else "left"
        yield Item(f"item{i:06d}", f"S{i // 18:05d}", f"V{(i // 2) % 9:02d}", side, f"DESS{i}")


def manifest_only(folder: Path, n: int) -> dict[str, float]:
    """Per-item cost of the manifest operations a run performs, without any executor."""
    with Manifest(folder / "manifest.sqlite") as manifest:
        start = time.perf_counter()
        manifest.sync((item, "k" * 16) for item in tiny_items(n))
        sync_s = time.perf_counter() - start
        start = time.perf_counter()
        last = -1
        while queued := manifest.queued(last, 512, 3):
            last = queued[-1].seq
            for q in queued:
                manifest.mark_running(q.item.item_id)
                outcome = TaskOutcome(
                    q.item.item_id,
                    ok=True,
                    values={"x": 1.0},
                    step_s={"noop": 1e-5},
                    started_at=1.0,
                    finished_at=2.0,
                )
                manifest.record(outcome, PROVENANCE)
        record_s = time.perf_counter() - start
    return {
        "sync_ms_per_item": 1000 * sync_s / n,
        "queue_mark_record_ms_per_item": 1000 * record_s / n,
        "manifest_ms_per_item": 1000 * (sync_s + record_s) / n,
    }


_CLUSTER_PROCESS = """
import sys, time, distributed
cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address=":0")
print(cluster.scheduler_address, flush=True)
sys.stdin.read()
cluster.close()
"""


def start_external_cluster() -> tuple[subprocess.Popen[str], str]:
    """A LocalCluster in another process (so the driver's RSS excludes the scheduler)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def full_run(folder: Path, n: int, executor: str) -> dict[str, object]:
    external = None
    if executor == "local":
        exec_config: dict[str, object] = {"kind": "local"}
    elif executor == "dask":
        exec_config = {"kind": "dask", "workers": 2, "max_in_flight": 64}
    else:
        external, address = start_external_cluster()
        exec_config = {"kind": "address", "address": address, "max_in_flight": 64}
    config = PipelineConfig.model_validate(
        {
            "name": "bookkeeping",
            "items": {"rows": [{"item_id": "unused"}]},
            "steps": [{"name": "noop"}],
            "executor": exec_config,
        }
    )
    try:
        return _timed_runs(folder, n, executor, config)
    finally:
        if external is not None:
            external.communicate("", timeout=60)


def _timed_runs(folder: Path, n: int, executor: str, config: PipelineConfig) -> dict[str, object]:
    ws = Workspace.resolve(folder / "ws")
    process = psutil.Process()
    samples: list[tuple[int, float]] = []

    def sample(progress: Progress) -> None:
        samples.append((progress.done, process.memory_info().rss / 2**20))

    start = time.perf_counter()
    result = run_pipeline(
        config, ws, items=tiny_items(n), on_progress=sample, progress_interval_s=0.25
    )
    run_s = time.perf_counter() - start
    start = time.perf_counter()
    again = run_pipeline(config, ws, items=tiny_items(n))
    rerun_s = time.perf_counter() - start
    rss = [mb for _, mb in samples]
    tail = rss[len(rss) // 4 :] or rss
    return {
        "executor": executor,
        "done": result.done,
        "run_s": run_s,
        "driver_ms_per_item": 1000 * run_s / n,
        "rerun_all_skipped_s": rerun_s,
        "rerun_ran": again.ran,
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_quarter": tail[0] if tail else None,
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        "rss_growth_after_first_quarter_mb": (max(tail) - tail[0]) if tail else None,
        "rss_samples_mb": [
            (done, round(mb, 1)) for done, mb in samples[:: max(1, len(samples) // 12)]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--executor", default="local", choices=["local", "dask", "address"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report: dict[str, object] = {"items": args.items}
        report["manifest_only"] = manifest_only(Path(tmp), args.items)
        report["run"] = full_run(Path(tmp), args.items, args.executor)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
