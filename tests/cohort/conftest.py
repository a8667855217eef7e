"""Fixtures of the cohort tests: small real cohorts on disk and the executor matrix.

``executor_config`` parametrises the shared executor suite (like zarr's store test suite):
every executor - in-process, Dask LocalCluster, an existing scheduler by address, Slurm -
must pass the same tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slurm_helpers import cancel_slurm_jobs, slurm_job_name
from synth_catalog import SynthCatalog, build_synth_catalog

from kneescope.cohort.pipeline_config import ExecutorConfig


@pytest.fixture(scope="session")
def dask_scheduler_address() -> Iterator[str]:
    """An already-running Dask scheduler with two single-thread worker processes."""
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


EXECUTOR_KINDS = [
    "local",
    "dask",
    "address",
    pytest.param("slurm", marks=pytest.mark.integration),
]
# Tests that run a pipeline several times start a LocalCluster per run for "dask" (~3-4 s
# each on 2 cores): there the "dask" case is slow; "address" covers the same code on a
# running cluster in the default suite.
MULTI_RUN_EXECUTOR_KINDS = [
    "local",
    pytest.param("dask", marks=pytest.mark.slow),
    # a running scheduler stays in the default suite through the shared executor suite
    pytest.param("address", marks=pytest.mark.slow),
    pytest.param("slurm", marks=pytest.mark.integration),
]


def _executor(kind: str, request: pytest.FixtureRequest) -> Iterator[ExecutorConfig]:
    if kind == "local":
        yield ExecutorConfig(kind="local")
    elif kind == "dask":
        yield ExecutorConfig(kind="dask", workers=2, threads_per_worker=1, memory_limit="1GiB")
    elif kind == "address":
        address = request.getfixturevalue("dask_scheduler_address")
        yield ExecutorConfig(kind="address", address=address)
    else:
        request.getfixturevalue("slurm_available")
        job_name = slurm_job_name()
        try:
            yield ExecutorConfig(
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
        finally:
            cancel_slurm_jobs(job_name)


@pytest.fixture(params=EXECUTOR_KINDS)
def executor_config(request: pytest.FixtureRequest) -> Iterator[ExecutorConfig]:
    """Every executor, one at a time (the shared executor suite)."""
    yield from _executor(request.param, request)


@pytest.fixture(params=MULTI_RUN_EXECUTOR_KINDS)
def multi_run_executor_config(request: pytest.FixtureRequest) -> Iterator[ExecutorConfig]:
    """Every executor, for tests that run several times (LocalCluster ones marked slow)."""
    yield from _executor(request.param, request)


@pytest.fixture(scope="session")
def synth_catalog_template(tmp_path_factory: pytest.TempPathFactory) -> SynthCatalog:
    """One small synthetic catalog (radiographs of one subject at two visits, two tiny MRI),
    built once per session; tests work on copies (``copy_synth_catalog``)."""
    return build_synth_catalog(tmp_path_factory.mktemp("synth_catalog"))


# Slurm cases whose logic the local and running-cluster cases check in the default suite (and
# Slurm itself stays there through the provenance, scancel, dying-worker and training tests): in the
# slow suite, to keep the default suite under 10 minutes on 2 cores (~36 s, issue 17).
SLOW_SLURM_CASES = frozenset(
    {
        "test_rerun_skips_unchanged_and_reruns_only_what_changed[slurm]",
        "test_failed_items_are_retried_up_to_the_limit[slurm]",
        "test_ctrl_c_stops_cleanly_and_resumes[slurm]",
        # kill -9 of the driver is the local case's logic; a Slurm worker's death stays in the
        # default suite (scancel of a worker job, a worker that dies)
        "test_kill_9_of_the_driver_then_resume[slurm]",
    }
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark :data:`SLOW_SLURM_CASES` slow (before ``-m`` deselects)."""
    for item in items:
        if item.name in SLOW_SLURM_CASES:
            item.add_marker(pytest.mark.slow)
