"""Faults of the driver itself, on every executor: kill -9 mid-run then resume (no lost and
no duplicated rows), and Ctrl-C (running items back to pending, clean exit, resumable).

The driver is the real ``kneescope run`` command in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from cohort_helpers import write_cohort, write_toml_config

from kneescope.cohort.pipeline_config import ExecutorConfig, PipelineConfig
from kneescope.cohort.run_status import read_status
from kneescope.cohort.runner import run_pipeline
from kneescope.config import load_config
from kneescope.workspace import Workspace

N_ITEMS = 12


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_driver(
    tmp_path: Path, executor: ExecutorConfig, *, sigint_ignored: bool = False
) -> tuple[subprocess.Popen[str], Path]:
    data = tmp_path / "data"
    write_cohort(data, N_ITEMS)
    config = write_toml_config(
        tmp_path / "run.toml",
        "faults",
        data / "items.csv",
        executor,
        [("load_array", {}), ("sleep", {"seconds": 0.4}), ("array_stats", {})],
    )
    command = [sys.executable, "-m", "kneescope", "run", "-w", str(tmp_path / "ws")]
    command += ["--config", str(config), "--json"]
    with (tmp_path / "driver.err").open("w") as err:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
    return proc, config


def _close(proc: subprocess.Popen[str]) -> None:
    proc.wait(timeout=60)


def _done(manifest: Path) -> dict[str, float]:
    if not manifest.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT item_id, finished_at FROM items WHERE state = 'done'")
            return {r[0]: r[1] for r in rows}
    except sqlite3.OperationalError:
        return {}


def _wait_for_done(proc: subprocess.Popen[str], manifest: Path, n: int) -> dict[str, float]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = _done(manifest)
        if len(done) >= n:
            return done
        if proc.poll() is not None:
            pytest.fail(f"driver exited early ({proc.returncode})")
        time.sleep(0.1)
    proc.kill()
    pytest.fail("driver made no progress in 180 s")


def _status(ws: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "kneescope", "status", "-w", str(ws), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _check_complete(tmp_path: Path, config_path: Path, done_before: dict[str, float]) -> None:
    config = load_config(PipelineConfig, config_path)
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"), base_dir=tmp_path)
    assert (result.done, result.failed) == (N_ITEMS, 0)
    assert result.ran <= N_ITEMS - len(done_before)  # recorded results are never recomputed
    table = pd.read_parquet(result.results_path)
    assert len(table) == N_ITEMS and table["item_id"].is_unique
    after = _done(result.run_dir / "manifest.sqlite")
    for item_id, finished_at in done_before.items():
        assert after[item_id] == finished_at


def test_kill_9_of_the_driver_then_resume(
    tmp_path: Path, multi_run_executor_config: ExecutorConfig
) -> None:
    executor_config = multi_run_executor_config
    proc, config = _start_driver(tmp_path, executor_config)
    manifest = tmp_path / "ws" / "runs" / "faults" / "manifest.sqlite"
    children: list[psutil.Process] = []
    try:
        _wait_for_done(proc, manifest, 2)
        status = read_status(Workspace.resolve(tmp_path / "ws"), "faults")
        assert status.state == "running" and status.driver_running
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        _close(proc)
    for child in children:
        if child.is_running():
            child.kill()
    done_before = _done(manifest)
    assert 2 <= len(done_before) < N_ITEMS
    assert _status(tmp_path / "ws")["driver_running"] is False
    _check_complete(tmp_path, config, done_before)


def test_ctrl_c_stops_cleanly_and_resumes(
    tmp_path: Path, multi_run_executor_config: ExecutorConfig
) -> None:
    executor_config = multi_run_executor_config
    # started as a non-interactive shell starts a background job: SIGINT inherited as ignored
    proc, config = _start_driver(tmp_path, executor_config, sigint_ignored=True)
    manifest = tmp_path / "ws" / "runs" / "faults" / "manifest.sqlite"
    try:
        _wait_for_done(proc, manifest, 1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        _close(proc)
    stderr = (tmp_path / "driver.err").read_text()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    with sqlite3.connect(manifest) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall())
        meta_state = db.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()[0]
    assert "running" not in states
    assert json.loads(meta_state) == "interrupted"
    assert states.get("pending", 0) > 0
    _check_complete(tmp_path, config, _done(manifest))
