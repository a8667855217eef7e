"""Pure translations of an ExecutorConfig into Dask / dask-jobqueue arguments (no imports of
Dask here, so they are cheap to test and to print in ``--dry-run``)."""

from __future__ import annotations

import sys
from typing import Any

from kneescope.cohort.pipeline_config import ExecutorConfig
from kneescope.errors import ConfigError

COMPUTE_RESOURCE = "kneescope-compute"
"""Worker resource that compute tasks hold: with prefetch, a worker has one thread more than
it has of this resource, so reading the next item overlaps the current item's compute."""


WORKER_MALLOC_BYTES = 128 * 1024 * 1024
"""glibc's mmap and trim thresholds in Dask worker processes (bytes).

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting it fixes glibc's
mmap threshold at its 128 KiB default, so every tensor larger than that is a fresh ``mmap``
whose pages fault in again on each use: the shipped 2D model's network pass took 24.9 s
instead of 16.3 s on one thread (issue 19). With both thresholds at 128 MiB, tensors up to
that size are reused from the heap; the segmenter trims the heap after each volume, so the
worker's peak RSS stays put (761 against 741 MB for one full-size knee)."""


def worker_environ_config() -> dict[str, Any]:
    """Dask config keys (for ``dask.config.set``) that set :data:`WORKER_MALLOC_BYTES` in the
    environment of every worker process a nanny spawns while they are in force."""
    key = "distributed.nanny.pre-spawn-environ"
    return {
        f"{key}.MALLOC_TRIM_THRESHOLD_": WORKER_MALLOC_BYTES,
        f"{key}.MALLOC_MMAP_THRESHOLD_": WORKER_MALLOC_BYTES,
    }


def local_cluster_kwargs(config: ExecutorConfig, prefetch: bool = False) -> dict[str, Any]:
    """Arguments of ``distributed.LocalCluster`` for ``kind = "dask"``.

    With ``prefetch`` every worker gets one extra (reader) thread and
    ``threads_per_worker`` units of :data:`COMPUTE_RESOURCE`.
    """
    kwargs: dict[str, Any] = {
        "n_workers": config.workers,
        "threads_per_worker": config.threads_per_worker + (1 if prefetch else 0),
        "processes": config.processes,
        "memory_limit": config.memory_limit,
        "host": config.host or "127.0.0.1",
        "dashboard_address": ":0",
    }
    if prefetch:
        kwargs["resources"] = {COMPUTE_RESOURCE: config.threads_per_worker}
    return kwargs


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
        "job_name": config.job_name,
        "python": sys.executable,
        "scheduler_options": {"dashboard_address": ":0"},
    }
    if config.host:
        kwargs["scheduler_options"]["host"] = config.host
        kwargs["worker_extra_args"] = ["--host", config.host]
    if config.kind == "pbs":
        kwargs["resource_spec"] = f"select=1:ncpus={config.cores}:mem={config.memory}"
    return kwargs


def gpu_worker_specs(config: ExecutorConfig, prefetch: bool = False) -> dict[str, dict[str, Any]]:
    """Worker specs for ``distributed.SpecCluster``: one Nanny per GPU id.

    Each worker sees exactly one GPU (``CUDA_VISIBLE_DEVICES`` = its id, so it is ``cuda:0``
    inside the worker) and runs ``threads_per_worker`` threads (one more with ``prefetch``).
    """
    if not config.gpu_ids:
        raise ConfigError("executor kind 'gpu' needs gpu_ids = [0, 1, ...]; list the GPUs to use")
    extra = {"resources": {COMPUTE_RESOURCE: config.threads_per_worker}} if prefetch else {}
    return {
        f"gpu-{gpu}": {
            "cls": "distributed.Nanny",
            "options": {
                **extra,
                "nthreads": config.threads_per_worker + (1 if prefetch else 0),
                "memory_limit": config.memory_limit,
                "host": config.host or "127.0.0.1",
                "env": {"CUDA_VISIBLE_DEVICES": str(gpu)},
            },
        }
        for gpu in config.gpu_ids
    }
