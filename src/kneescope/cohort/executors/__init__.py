"""Executors: where a run's items execute, behind one small interface (:class:`Executor`).

``make_executor`` picks one from an :class:`~kneescope.cohort.pipeline_config.ExecutorConfig`:
in-process (default), Dask LocalCluster, an existing scheduler, Slurm/PBS via dask-jobqueue,
or one worker per GPU. Dask is imported only when a Dask executor starts.
"""

from kneescope.cohort.executors.base import Executor, Finished
from kneescope.cohort.executors.factory import make_executor

__all__ = ["Executor", "Finished", "make_executor"]
