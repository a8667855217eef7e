"""Steps plug in by name without touching the runner; reads overlap compute in-process."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from cohort_helpers import pipeline, write_cohort
from kneescope_test_steps import COMPUTE_S, READ_S

from kneescope.cohort.pipeline_config import ExecutorConfig, StepConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.cohort.step_registry import build_steps, steps_fingerprint
from kneescope.errors import ConfigError
from kneescope.workspace import Workspace

# Test-only steps of the plug-in distribution tests/plugin_pkg (installed in the test
# environment): they plug in by name through the kneescope.steps entry points.
STEPS = [
    {"name": "test_slow_read"},
    {"name": "test_slow_compute"},
]


def _run(tmp_path: Path, prefetch: int, n: int = 6) -> tuple[float, pd.DataFrame]:
    data = tmp_path / "data"
    write_cohort(data, n)
    config = pipeline(f"p{prefetch}", data, ExecutorConfig(), steps=STEPS, prefetch=prefetch)
    start = time.perf_counter()
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    return time.perf_counter() - start, pd.read_parquet(result.results_path)


def test_plugged_in_steps_pass_data_and_time_their_phases(tmp_path: Path) -> None:
    _, table = _run(tmp_path, prefetch=0, n=3)
    assert list(table["echo"]) == list(table["item_id"])
    assert (table["time_read_s"] >= READ_S * 0.9).all()
    assert (table["time_infer_s"] >= COMPUTE_S * 0.9).all()
    assert (table["model_hash"].str.len() == 16).all()


@pytest.mark.slow  # compares wall-clock times: not in the default suite (CI machines vary)
def test_prefetch_overlaps_reading_with_compute(tmp_path: Path) -> None:
    n = 6
    serial_s, _ = _run(tmp_path / "serial", prefetch=0, n=n)
    overlapped_s, table = _run(tmp_path / "prefetch", prefetch=2, n=n)
    assert len(table) == n
    assert serial_s >= n * (READ_S + COMPUTE_S)
    # Reads hide behind compute: about n * max(read, compute) + one read.
    assert overlapped_s < serial_s - 0.3 * n * READ_S


def test_model_change_changes_the_key_but_executor_does_not() -> None:
    def hashes(model: str) -> dict[str, str]:
        configs = [
            StepConfig(name=STEPS[0]["name"]),
            StepConfig(name=STEPS[1]["name"], options={"model": model}),
        ]
        return steps_fingerprint(configs, build_steps(configs))

    assert hashes("a")["model_hash"] != hashes("b")["model_hash"]
    assert hashes("a") == hashes("a")


def test_step_order_and_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="reads \\['token'\\] but no earlier step"):
        build_steps([StepConfig(name=STEPS[1]["name"]), StepConfig(name=STEPS[0]["name"])])
    with pytest.raises(ConfigError, match="unknown step 'segmentt'"):
        build_steps([StepConfig(name="segmentt")])
    with pytest.raises(ConfigError, match="bad options"):
        build_steps([StepConfig(name="array_stats", options={"nope": 1})])
    with pytest.raises(ConfigError, match="unknown step 'no_such_module_xyz:Step'"):
        build_steps([StepConfig(name="no_such_module_xyz:Step")])


def test_dask_workers_read_the_next_item_while_computing(tmp_path: Path) -> None:
    """One single-thread worker: with prefetch its reader thread overlaps reads with compute."""
    import sqlite3

    n = 6
    data = tmp_path / "data"
    write_cohort(data, n)
    executor = ExecutorConfig(kind="dask", workers=1, threads_per_worker=1, memory_limit="1GiB")
    config = pipeline("dprefetch", data, executor, steps=STEPS, prefetch=2)
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    assert result.done == n
    with sqlite3.connect(result.run_dir / "manifest.sqlite") as db:
        first, last = db.execute("SELECT MIN(started_at), MAX(finished_at) FROM items").fetchone()
    table = pd.read_parquet(result.results_path)
    assert list(table["echo"]) == list(table["item_id"])
    serial_s = n * (READ_S + COMPUTE_S)
    assert last - first < serial_s - 0.3 * n * READ_S
