"""Pick the executor an :class:`ExecutorConfig` names."""

from __future__ import annotations

from kneescope.cohort.executors.base import Executor
from kneescope.cohort.executors.dask_executor import DaskExecutor
from kneescope.cohort.executors.in_process import InProcessExecutor
from kneescope.cohort.pipeline_config import ExecutorConfig


def make_executor(config: ExecutorConfig, prefetch: int = 2) -> Executor:
    """In-process for ``kind = "local"``, else a Dask executor (not yet started).

    ``prefetch`` > 0 overlaps reading with compute: in-process it is the number of items read
    ahead; on clusters the executor starts (dask, gpu) each worker gets a reader thread.
    """
    if config.kind == "local":
        return InProcessExecutor(prefetch=prefetch)
    return DaskExecutor(config, prefetch=prefetch > 0)
