"""Cluster configuration: Slurm/PBS job scripts (real dask-jobqueue, nothing submitted),
one worker per GPU (real SpecCluster on CPU, each worker sees its own CUDA_VISIBLE_DEVICES),
and an executor that cannot start."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cohort_helpers import pipeline, write_cohort

from kneescope.cohort.executors.cluster_specs import gpu_worker_specs, jobqueue_kwargs
from kneescope.cohort.executors.dask_executor import job_script
from kneescope.cohort.pipeline_config import ExecutorConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.errors import ConfigError, RunError
from kneescope.workspace import Workspace


def _batch(kind: str) -> ExecutorConfig:
    return ExecutorConfig(
        kind=kind,  # type: ignore[arg-type]
        queue="gpu-long",
        account="oai-proj",
        cores=6,
        memory="24GB",
        walltime="12:00:00",
        gpus=2,
        job_extra=("--constraint=a100",) if kind == "slurm" else ("-l place=scatter",),
        host="127.0.0.1",
    )


def test_slurm_job_script_has_every_field() -> None:
    script = job_script(_batch("slurm"))
    for line in (
        "#SBATCH -p gpu-long",
        "#SBATCH -A oai-proj",
        "#SBATCH -t 12:00:00",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --constraint=a100",
        "#SBATCH --gres=gpu:2",
    ):
        assert line in script
    assert "--nthreads 6" in script and "--memory-limit 22.35GiB" in script
    assert "--host 127.0.0.1" in script


def test_pbs_job_script_has_every_field() -> None:
    script = job_script(_batch("pbs"))
    for line in (
        "#PBS -q gpu-long",
        "#PBS -A oai-proj",
        "#PBS -l walltime=12:00:00",
        "#PBS -l select=1:ncpus=6:mem=24GB",
        "#PBS -l place=scatter",
        "#PBS -l ngpus=2",
    ):
        assert line in script


def test_jobqueue_kwargs_refuse_non_batch_kinds() -> None:
    with pytest.raises(ConfigError, match="not a batch system"):
        jobqueue_kwargs(ExecutorConfig(kind="dask"))


def test_gpu_specs_pin_one_gpu_per_worker() -> None:
    specs = gpu_worker_specs(ExecutorConfig(kind="gpu", gpu_ids=(0, 1, 3), threads_per_worker=2))
    envs = [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()]
    assert envs == ["0", "1", "3"]
    assert all(s["options"]["nthreads"] == 2 for s in specs.values())
    with pytest.raises(ConfigError, match="gpu_ids"):
        gpu_worker_specs(ExecutorConfig(kind="gpu"))


def test_gpu_executor_runs_each_worker_on_its_own_device(tmp_path: Path) -> None:
    write_cohort(tmp_path / "data", 8)
    config = pipeline(
        "gpus",
        tmp_path / "data",
        ExecutorConfig(kind="gpu", gpu_ids=(0, 1), memory_limit="1GiB"),
        steps=[{"name": "noop"}, {"name": "sleep", "options": {"seconds": 0.05}}],
    )
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    table = pd.read_parquet(result.results_path)
    assert len(table) == 8
    device_of_pid = table.groupby("pid")["cuda_visible_devices"].unique()
    assert all(len(devices) == 1 for devices in device_of_pid)  # a worker keeps its GPU
    assert set(table["cuda_visible_devices"]) <= {"0", "1"}


def test_unreachable_scheduler_is_a_run_error(tmp_path: Path) -> None:
    write_cohort(tmp_path / "data", 1)
    executor = ExecutorConfig(kind="address", address="tcp://127.0.0.1:9", worker_timeout_s=2)
    with pytest.raises(RunError, match="no workers came up"):
        run_pipeline(pipeline("nosched", tmp_path / "data", executor), Workspace.resolve(tmp_path))


def test_batch_jobs_carry_the_configured_job_name() -> None:
    """``job_name`` names the worker jobs (the test fixtures cancel only their own jobs by it);
    the default stays dask-jobqueue's."""
    from slurm_helpers import slurm_job_name

    name = slurm_job_name()
    assert name != slurm_job_name()
    assert f"#SBATCH -J {name}" in job_script(_batch("slurm").model_copy(update={"job_name": name}))
    assert f"#PBS -N {name}" in job_script(_batch("pbs").model_copy(update={"job_name": name}))
    assert "#SBATCH -J dask-worker" in job_script(_batch("slurm"))
    assert jobqueue_kwargs(_batch("slurm"))["job_name"] == "dask-worker"
    with pytest.raises(ValueError, match="job_name"):
        ExecutorConfig(kind="slurm", job_name="x; rm -rf ~")


def _worker_malloc_env() -> tuple[str | None, str | None]:
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_MMAP_THRESHOLD_")


def test_local_workers_keep_large_tensors_off_fresh_mmaps() -> None:
    """Dask's nanny default (trim threshold 64 KiB) pins glibc's mmap threshold at 128 KiB;
    kneescope's workers start with both thresholds raised (a real LocalCluster)."""
    import distributed

    from kneescope.cohort.executors.cluster_specs import WORKER_MALLOC_BYTES
    from kneescope.cohort.executors.dask_executor import make_cluster

    cluster = make_cluster(ExecutorConfig(kind="dask", workers=1, threads_per_worker=1))
    try:
        with distributed.Client(cluster) as client:
            seen = list(client.run(_worker_malloc_env).values())
    finally:
        cluster.close()
    assert seen == [(str(WORKER_MALLOC_BYTES), str(WORKER_MALLOC_BYTES))]
