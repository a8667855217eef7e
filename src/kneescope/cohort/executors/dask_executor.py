"""Dask executors: LocalCluster, an existing scheduler, Slurm/PBS jobs, one worker per GPU.

Items are submitted as futures (at most the runner's in-flight limit) and collected with
``distributed.as_completed``. A worker that dies has its task rescheduled by Dask on another
worker (up to ``allowed_failures`` times); after that the item comes back ``lost`` and the
runner retries or fails it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import threading
import traceback
import uuid
from typing import Any

from kneescope.cohort.executors.base import Executor, Finished
from kneescope.cohort.executors.cluster_specs import (
    COMPUTE_RESOURCE,
    gpu_worker_specs,
    jobqueue_kwargs,
    local_cluster_kwargs,
    worker_environ_config,
)
from kneescope.cohort.item_task import (
    TaskOutcome,
    TaskPayload,
    compute_stage,
    read_stage,
    run_item_task,
)
from kneescope.cohort.pipeline_config import ExecutorConfig
from kneescope.errors import RunError

log = logging.getLogger(__name__)


def _forward_worker_logs(client: Any) -> None:
    """Workers in other processes (or on other machines) send their ``kneescope`` records at
    INFO and above, and their warnings, to this driver, whose loggers re-emit them (so they
    reach ``RUN/run.log`` and, by level, the console). Workers joining later get the same."""
    import distributed

    class WorkerLogging(distributed.WorkerPlugin):  # type: ignore[misc]
        def setup(self, worker: Any) -> None:
            if logging.getLogger("kneescope").getEffectiveLevel() > logging.INFO:
                logging.getLogger("kneescope").setLevel(logging.INFO)
            logging.captureWarnings(True)

    client.register_plugin(WorkerLogging(), name="kneescope-worker-logging")
    client.forward_logging("kneescope", level=logging.INFO)
    client.forward_logging("py.warnings", level=logging.WARNING)


def _import_jobqueue() -> Any:
    """Import dask_jobqueue, keeping our Ctrl-C handling.

    dask_jobqueue's runner module replaces the SIGINT handler at import time (Ctrl-C would
    become ``sys.exit()``, i.e. a silent exit 0); the handler in place before is restored.
    """
    previous = signal.getsignal(signal.SIGINT)
    try:
        return importlib.import_module("dask_jobqueue")
    except ImportError:
        raise RunError(
            "the slurm and pbs executors need dask-jobqueue, which is not installed; install "
            "kneescope's cluster extra: pip install 'kneescope[cluster]' (in a source checkout: "
            "pip install -e '.[cluster]')"
        ) from None
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


def make_cluster(config: ExecutorConfig, prefetch: bool = False) -> Any:
    """Start the cluster the config names (None for ``address``). Caller closes it.

    ``prefetch`` (LocalCluster and GPU clusters only) gives each worker a reader thread.
    """
    import dask
    import distributed

    settings = {"distributed.scheduler.allowed-failures": config.allowed_failures}
    with dask.config.set({**settings, **worker_environ_config()}):
        if config.kind == "dask":
            return distributed.LocalCluster(**local_cluster_kwargs(config, prefetch))  # type: ignore[no-untyped-call]
        if config.kind == "gpu":
            scheduler = {
                "cls": distributed.Scheduler,
                "options": {"host": config.host or "127.0.0.1", "dashboard_address": ":0"},
            }
            workers = gpu_worker_specs(config, prefetch)
            for spec in workers.values():
                spec["cls"] = distributed.Nanny
            return distributed.SpecCluster(workers=workers, scheduler=scheduler)  # type: ignore[no-untyped-call]
        if config.kind in ("slurm", "pbs"):
            jobqueue = _import_jobqueue()
            cls = jobqueue.SLURMCluster if config.kind == "slurm" else jobqueue.PBSCluster
            cluster = cls(**jobqueue_kwargs(config))
            cluster.scale(jobs=config.workers)
            return cluster
    return None


def job_script(config: ExecutorConfig) -> str:
    """The batch job script a Slurm/PBS run would submit (starts and stops a local scheduler)."""
    jobqueue = _import_jobqueue()
    cls = jobqueue.SLURMCluster if config.kind == "slurm" else jobqueue.PBSCluster
    with cls(**jobqueue_kwargs(config)) as cluster:
        return str(cluster.job_script())


class DaskExecutor(Executor):
    """Run items as futures on a Dask cluster that this executor starts (or joins)."""

    isolates_workers = True

    def __init__(self, config: ExecutorConfig, prefetch: bool = False) -> None:
        self.config = config
        self.kind = config.kind  # type: ignore[misc]
        # Workers we start get a reader thread; joined clusters and batch jobs do not.
        self.prefetch = prefetch and config.kind in ("dask", "gpu")
        self._reads: dict[str, Any] = {}
        self._cluster: Any = None
        self._client: Any = None
        self._completed: Any = None
        self._futures: dict[str, TaskPayload] = {}

    def start(self) -> None:
        import distributed

        try:
            self._cluster = make_cluster(self.config, self.prefetch)
            address = self.config.address if self._cluster is None else self._cluster
            self._client = distributed.Client(  # type: ignore[no-untyped-call]
                address, timeout=self.config.worker_timeout_s
            )
            if self.config.kind != "dask" or self.config.processes:
                _forward_worker_logs(self._client)
            wanted = 1 if self.config.kind == "address" else self.config.workers
            if self.config.kind == "gpu":
                wanted = len(self.config.gpu_ids)
            self._client.wait_for_workers(wanted, timeout=self.config.worker_timeout_s)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise RunError(
                f"{self.config.kind} executor: no workers came up ({exc}); check the "
                "scheduler address, queue or job limits"
            ) from None
        self._completed = distributed.as_completed()  # type: ignore[no-untyped-call]
        log.info("dask executor %s with %d workers", self.kind, len(self._workers()))

    def _workers(self) -> dict[str, Any]:
        return dict(self._client.scheduler_info(n_workers=-1).get("workers", {}))

    def submit(self, payload: TaskPayload) -> None:
        uid = uuid.uuid4().hex
        if self.prefetch:
            # Read on the worker's reader thread, compute holding a compute slot: the next
            # item's read overlaps this item's compute (Dask keeps both on one worker).
            read = self._client.submit(read_stage, payload, key=f"kneescope-read-{uid}", pure=False)
            future = self._client.submit(
                compute_stage,
                read,
                key=f"kneescope-item-{uid}",
                pure=False,
                resources={COMPUTE_RESOURCE: 1},
            )
            self._reads[future.key] = read
        else:
            future = self._client.submit(
                run_item_task, payload, key=f"kneescope-item-{uid}", pure=False
            )
        self._futures[future.key] = payload
        self._completed.add(future)

    def next_finished(self) -> Finished:
        import distributed

        if not self._futures:
            raise RuntimeError("next_finished() called with nothing submitted")
        future = next(self._completed)
        payload = self._futures.pop(future.key)
        try:
            outcome = future.result()
        except distributed.KilledWorker as exc:
            return Finished(payload, None, f"worker died while running the item ({exc})")
        except (distributed.CancelledError, OSError) as exc:
            return Finished(payload, None, f"item lost: {type(exc).__name__}: {exc}")
        except Exception as exc:  # raised outside the steps: a bug, which stops the run
            outcome = TaskOutcome(
                item_id=payload.item.item_id,
                ok=False,
                reason=f"{type(exc).__name__}: {exc}".replace("\n", " "),
                bug="".join(traceback.format_exception(exc)),
            )
        finally:
            future.release()
            read = self._reads.pop(future.key, None)
            if read is not None:
                read.release()
        return Finished(payload, outcome)

    def cancel_all(self) -> None:
        if self._client is not None and self._completed is not None:
            futures = list(self._completed.futures)
            with contextlib.suppress(Exception):
                self._client.cancel(futures, force=True)
            with contextlib.suppress(Exception):
                self._client.cancel(list(self._reads.values()), force=True)
            self._completed.clear()
        self._futures.clear()
        self._reads.clear()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": self.kind, "prefetch": self.prefetch}
        if self._client is not None:
            workers = self._workers()
            info["workers"] = len(workers)
            info["scheduler"] = self._client.scheduler.address
        return info
