"""Pure translations of an ExecutorConfig into Dask / dask-jobqueue arguments (no imports of
Dask here, so they are cheap to test and to print in ``--dry-run``)."""

from __future__ import annotations

import sys
from typing import Any

from kneescope.cohort.pipeline_config import ExecutorConfig
from kneescope.errors import ConfigError


def local_cluster_kwargs(config: ExecutorConfig) -> dict[str, Any]:
    """Arguments of ``distributed.LocalCluster`` for ``kind = "dask"``."""
    return {
        "n_workers": config.workers,
        "threads_per_worker": config.threads_per_worker,
        "processes": config.processes,
        "memory_limit": config.memory_limit,
        "host": config.host or "127.0.0.1",
        "dashboard_address": ":0",
    }


def jobqueue_kwargs(config: ExecutorConfig) -> dict[str, Any]:
    """Arguments of ``dask_jobqueue.SLURMCluster`` / ``PBSCluster``: one worker per job.

    GPUs become ``--gres=gpu:N`` (Slurm) or ``-l ngpus=N`` (PBS) directives.
    """
    if config.kind not in ("slurm", "pbs"):
        raise ConfigError(f"executor kind {config.kind!r} is not a batch system (slurm, pbs)")
    extra = list(config.job_extra)
    if config.gpus:
        extra.append(
            f"--gres=gpu:{config.gpus}" if config.kind == "slurm" else f"-l ngpus={config.gpus}"
        )
    kwargs: dict[str, Any] = {
        "cores": config.cores,
        "processes": 1,
        "memory": config.memory,
        "walltime": config.walltime,
        "queue": config.queue,
        "account": config.account,
        "job_extra_directives": extra,
        "python": sys.executable,
        "scheduler_options": {"dashboard_address": ":0"},
    }
    if config.host:
        kwargs["scheduler_options"]["host"] = config.host
        kwargs["worker_extra_args"] = ["--host", config.host]
    if config.kind == "pbs":
        kwargs["resource_spec"] = f"select=1:ncpus={config.cores}:mem={config.memory}"
    return kwargs


def gpu_worker_specs(config: ExecutorConfig) -> dict[str, dict[str, Any]]:
    """Worker specs for ``distributed.SpecCluster``: one Nanny per GPU id.

    Each worker sees exactly one GPU (``CUDA_VISIBLE_DEVICES`` = its id, so it is ``cuda:0``
    inside the worker) and runs ``threads_per_worker`` threads.
    """
    if not config.gpu_ids:
        raise ConfigError("executor kind 'gpu' needs gpu_ids = [0, 1, ...]; list the GPUs to use")
    return {
        f"gpu-{gpu}": {
            "cls": "distributed.Nanny",
            "options": {
                "nthreads": config.threads_per_worker,
                "memory_limit": config.memory_limit,
                "host": config.host or "127.0.0.1",
                "env": {"CUDA_VISIBLE_DEVICES": str(gpu)},
            },
        }
        for gpu in config.gpu_ids
    }
