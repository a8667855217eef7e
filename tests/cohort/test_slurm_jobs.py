"""Slurm for real (one-node cluster from scripts/services.sh): items run inside Slurm jobs,
and a worker job cancelled with scancel mid-run has its items retried in the other job."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from cohort_helpers import pipeline, write_cohort
from slurm_helpers import cancel_slurm_jobs, slurm_job_name

from kneescope.cohort.pipeline_config import ExecutorConfig
from kneescope.cohort.runner import Progress, run_pipeline
from kneescope.workspace import Workspace

pytestmark = pytest.mark.integration


def _worker_jobs(job_name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "--noheader", "--name", job_name, "--states", "RUNNING", "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_scancel_of_a_worker_job_retries_its_items(tmp_path: Path, slurm_available: bool) -> None:
    data = tmp_path / "data"
    truth = write_cohort(data, 10)
    traces = tmp_path / "traces"
    traces.mkdir()
    job_name = slurm_job_name()
    executor = ExecutorConfig(
        kind="slurm",
        workers=2,
        cores=1,
        memory="2GB",
        queue="debug",
        walltime="00:30:00",
        host="127.0.0.1",
        worker_timeout_s=90,
        job_name=job_name,
    )
    steps = [
        {"name": "load_array"},
        {"name": "sleep", "options": {"seconds": 0.8, "trace_dir": str(traces)}},
        {"name": "array_stats"},
    ]
    cancelled: list[str] = []

    def cancel_one_job(progress: Progress) -> None:
        if progress.done >= 2 and not cancelled:
            jobs = _worker_jobs(job_name)
            assert len(jobs) == 2
            subprocess.run(["scancel", jobs[0]], check=True)
            cancelled.append(jobs[0])

    try:
        result = run_pipeline(
            pipeline("scancel", data, executor, steps=steps),
            Workspace.resolve(tmp_path / "ws"),
            on_progress=cancel_one_job,
            progress_interval_s=0.0,
        )
    finally:
        cancel_slurm_jobs(job_name)
    assert cancelled
    assert (result.done, result.failed) == (10, 0)
    table = pd.read_parquet(result.results_path).set_index("item_id")
    assert sorted(table.index) == sorted(truth)
    for item_id, mean in truth.items():
        assert table.loc[item_id, "mean"] == pytest.approx(mean)
    # Items that started in the cancelled job finished in the surviving one.
    started_in_cancelled = {p.name.split(".")[0] for p in traces.glob(f"*.*.{cancelled[0]}")}
    retried = [i for i in started_in_cancelled if table.loc[i, "slurm_job_id"] != cancelled[0]]
    assert retried, f"no item of job {cancelled[0]} was retried: {sorted(started_in_cancelled)}"
    assert table["slurm_job_id"].str.fullmatch(r"\d+").all()
