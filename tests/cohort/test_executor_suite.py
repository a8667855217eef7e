"""The shared executor suite: every executor must pass every test here.

Each test runs real steps on real files through a real executor (in-process, Dask
LocalCluster, an existing scheduler, Slurm) and checks the manifest and the results table
against known truth.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_helpers import pipeline, write_cohort

from kneescope.cohort.item_sources import iter_items
from kneescope.cohort.pipeline_config import ExecutorConfig
from kneescope.cohort.runner import Progress, run_pipeline
from kneescope.workspace import Workspace


def _states(run_dir: Path) -> dict[str, tuple[str, int, str | None]]:
    with sqlite3.connect(run_dir / "manifest.sqlite") as db:
        rows = db.execute("SELECT item_id, state, attempts, reason FROM items").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_results_match_truth_with_provenance(
    tmp_path: Path, executor_config: ExecutorConfig
) -> None:
    truth = write_cohort(tmp_path / "data", 6)
    ws = Workspace.resolve(tmp_path / "ws")
    config = pipeline("truth", tmp_path / "data", executor_config)
    result = run_pipeline(config, ws)
    assert (result.total, result.done, result.failed, result.ran) == (6, 6, 0, 6)
    table = pd.read_parquet(result.results_path)
    assert sorted(table["item_id"]) == sorted(truth)
    for row in table.itertuples():
        assert row.mean == pytest.approx(truth[row.item_id])
        assert row.voxels == 120
    assert set(table["side"]) == {"right", "left"}
    assert (table["config_hash"] == result.config_hash).all()
    assert table["kneescope_version"].str.len().min() > 0
    assert table["input_checksum"].str.len().min() == 32
    assert (table["time_step_array_stats_s"] > 0).all()
    assert (table["time_read_s"] > 0).all()
    if executor_config.kind == "slurm":
        assert table["slurm_job_id"].str.fullmatch(r"\d+").all()


def test_corrupt_item_fails_with_reason_and_run_goes_on(
    tmp_path: Path, executor_config: ExecutorConfig
) -> None:
    truth = write_cohort(tmp_path / "data", 5, corrupt=(2,))
    ws = Workspace.resolve(tmp_path / "ws")
    seen: list[Progress] = []
    result = run_pipeline(
        pipeline("corrupt", tmp_path / "data", executor_config), ws, on_progress=seen.append
    )
    assert (result.done, result.failed) == (4, 1)
    last = seen[-1]
    assert (last.total, last.done, last.failed, last.remaining, last.eta_s) == (5, 4, 1, 0, 0.0)
    assert last.rate_per_s > 0
    assert all(a.done + a.failed <= b.done + b.failed for a, b in itertools.pairwise(seen))
    states = _states(result.run_dir)
    state, attempts, reason = states["S002-V00-R"]
    assert (state, attempts) == ("failed", 1)
    assert reason is not None and "load_array: InputError" in reason
    table = pd.read_parquet(result.results_path)
    assert sorted(table["item_id"]) == sorted(truth)


def test_rerun_skips_unchanged_and_reruns_only_what_changed(
    tmp_path: Path, multi_run_executor_config: ExecutorConfig
) -> None:
    executor = multi_run_executor_config
    data = tmp_path / "data"
    write_cohort(data, 4)
    ws = Workspace.resolve(tmp_path / "ws")
    first = run_pipeline(pipeline("rerun", data, executor), ws)
    assert first.ran == 4
    # Executor and output settings do not change results: nothing re-runs.
    again = run_pipeline(pipeline("rerun", data, executor, output_format="csv"), ws)
    assert (again.ran, again.skipped, again.done) == (0, 4, 4)
    assert len(pd.read_csv(again.results_path)) == 4
    # One input file changes: only that item re-runs, with its new value.
    np.save(data / "vol001.npy", np.full((4, 5, 6), 7.25, dtype=np.float32))
    changed = run_pipeline(pipeline("rerun", data, executor), ws)
    assert changed.ran == 1
    table = pd.read_parquet(changed.results_path).set_index("item_id")
    assert table.loc["S001-V00-R", "mean"] == pytest.approx(7.25)
    # A step option changes: every item re-runs, with a new config hash on every row.
    steps = [{"name": "load_array"}, {"name": "array_stats", "options": {"write_json": True}}]
    new_config = run_pipeline(pipeline("rerun", data, executor, steps=steps), ws)
    assert new_config.ran == 4 and new_config.config_hash != first.config_hash
    table = pd.read_parquet(new_config.results_path)
    assert (table["config_hash"] == new_config.config_hash).all()
    assert all(Path(p).is_file() for p in table["file_array_stats_stats"])


def test_failed_items_are_retried_up_to_the_limit(
    tmp_path: Path, multi_run_executor_config: ExecutorConfig
) -> None:
    executor = multi_run_executor_config
    data = tmp_path / "data"
    write_cohort(data, 3, corrupt=(0,))
    ws = Workspace.resolve(tmp_path / "ws")
    config = pipeline("retry", data, executor, max_attempts=2)
    assert run_pipeline(config, ws).ran == 3
    second = run_pipeline(config, ws)
    assert second.ran == 1  # only the failed item is retried
    assert _states(second.run_dir)["S000-V00-R"][:2] == ("failed", 2)
    third = run_pipeline(config, ws)
    assert third.ran == 0  # attempts exhausted
    # Repairing the input changes its checksum: the item runs again and succeeds.
    np.save(data / "vol000.npy", np.full((4, 5, 6), 3.0, dtype=np.float32))
    fixed = run_pipeline(config, ws)
    assert (fixed.ran, fixed.done, fixed.failed) == (1, 3, 0)


def test_worker_that_dies_has_its_item_retried(
    tmp_path: Path, executor_config: ExecutorConfig
) -> None:
    from kneescope.cohort.executors import make_executor

    if not make_executor(executor_config).isolates_workers:
        pytest.skip("the in-process executor shares the driver's process (see the kill -9 test)")
    data = tmp_path / "data"
    write_cohort(data, 4)
    markers = tmp_path / "markers"
    markers.mkdir()
    steps = [
        {"name": "load_array"},
        {"name": "crash_once", "options": {"marker_dir": str(markers), "item_ids": ["S001-V00-R"]}},
        {"name": "array_stats"},
    ]
    if executor_config.kind == "slurm":  # a dead Slurm worker is not restarted: kill via SIGKILL
        steps[1]["options"]["how"] = "kill"
    ws = Workspace.resolve(tmp_path / "ws")
    result = run_pipeline(pipeline("crash", data, executor_config, steps=steps), ws)
    assert (result.done, result.failed) == (4, 0)
    table = pd.read_parquet(result.results_path).set_index("item_id")
    crashed = table.loc["S001-V00-R"]
    assert crashed["crashed_pid"] > 0
    assert crashed["ran_pid"] != crashed["crashed_pid"]  # retried in another worker process
    assert crashed["mean"] == pytest.approx(10.5)


def test_setup_runs_once_per_worker_process(
    tmp_path: Path, executor_config: ExecutorConfig
) -> None:
    data = tmp_path / "data"
    write_cohort(data, 8)
    ws = Workspace.resolve(tmp_path / "ws")
    steps = [{"name": "noop"}, {"name": "sleep", "options": {"seconds": 0.02}}]
    result = run_pipeline(pipeline("setup", data, executor_config, steps=steps), ws)
    table = pd.read_parquet(result.results_path)
    assert len(table) == 8
    per_pid = table.groupby("pid")["setup_calls"].max()
    if executor_config.kind == "local":
        assert list(per_pid.index) == [os.getpid()]
    assert (per_pid == table.groupby("pid")["setup_calls"].min()).all()  # no re-setup mid-run
    if executor_config.kind != "local":
        assert (per_pid == 1).all()


@pytest.mark.slow  # the single-death retry (test_worker_that_dies_has_its_item_retried) is default
def test_items_whose_workers_keep_dying_are_retried_then_failed(tmp_path: Path) -> None:
    """Past Dask's allowed failures (0 here) the runner counts an attempt and resubmits, up to
    max_attempts; an item that always kills its worker ends failed with the reason."""
    import dask
    import distributed

    data = tmp_path / "data"
    write_cohort(data, 2)
    markers = tmp_path / "markers"
    markers.mkdir()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        )
    try:
        executor = ExecutorConfig(kind="address", address=cluster.scheduler_address)
        ws = Workspace.resolve(tmp_path / "ws")
        outcomes = {}
        for item_id, times in (("S000-V00-R", 1), ("S001-V00-R", 99)):
            steps = [
                {"name": "load_array"},
                {"name": "crash_once", "options": {"marker_dir": str(markers), "times": times}},
                {"name": "array_stats"},
            ]
            config = pipeline(f"dying-{times}", data, executor, steps=steps, max_attempts=2)
            items = [i for i in iter_items(config.items, tmp_path) if i.item_id == item_id]
            result = run_pipeline(config, ws, items=items)
            outcomes[item_id] = _states(result.run_dir)[item_id]
    finally:
        cluster.close()
    assert outcomes["S000-V00-R"][:2] == ("done", 2)  # died once, retried by the runner
    state, attempts, reason = outcomes["S001-V00-R"]
    assert (state, attempts) == ("failed", 2)
    assert reason is not None and reason.startswith("worker died")
    assert len((markers / "S001-V00-R.crashed").read_text().split()) == 2
