"""Slurm job names of the cohort tests: each test's worker jobs carry a name of their own, and
only those are cancelled (never the user's other jobs, nor another test's)."""

from __future__ import annotations

import contextlib
import getpass
import subprocess
import uuid


def slurm_job_name() -> str:
    """A job name no one else uses: the worker jobs of one test, and only they, carry it."""
    return f"kneescope-test-{uuid.uuid4().hex[:12]}"


def cancel_slurm_jobs(job_name: str) -> None:
    """Cancel this user's Slurm jobs named ``job_name`` (leftovers of one test's run), and no
    other: not the user's own dask-worker jobs, nor another test's."""
    if not job_name.startswith("kneescope-test-"):
        raise ValueError(f"refusing to cancel jobs named {job_name!r}: not a test's own name")
    with contextlib.suppress(OSError):
        subprocess.run(["scancel", "--user", getpass.getuser(), "--name", job_name], check=False)
