"""Configuration of a cohort run: items, steps, executor, retries, output format.

Loaded from TOML with :func:`kneescope.config.load_config`::

    name = "dess-v00"
    max_attempts = 3
    output_format = "parquet"        # or "csv"

    [items]
    list = "items.csv"               # item_id,subject,visit,side,series,path
    # glob = "data/*.nii.gz"         # or every file matching a pattern (relative to the config)
    # catalog = { sequence = "DESS" }  # or a catalog selection
    # unit = "series"                # catalog selections: series | radiograph_knee |
    #                                # full_leg | subject_visit | knee_longitudinal
    # qc_rejected = "flag"           # knees rejected in QC review: flag | exclude

    [[steps]]
    name = "load_array"
    [[steps]]
    name = "array_stats"
    options = { write_json = true }

    [[cohort_steps]]                 # after every item: see the whole results table
    name = "visit_means"             # (registered under kneescope.cohort_steps)

    [executor]
    kind = "dask"                    # local | dask | address | slurm | pbs | gpu
    workers = 2
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from kneescope.config import FROZEN


class ItemRow(BaseModel):
    """One item given inline in the config."""

    model_config = FROZEN

    item_id: str
    subject: str = ""
    visit: str = ""
    side: str = ""
    series: str = ""
    path: str | None = None


class ItemsConfig(BaseModel):
    """Where the run's items come from: exactly one of ``list``, ``glob``, ``rows``, ``catalog``.

    Relative paths are relative to the config file's folder (or the workspace when the
    config is built in code).
    """

    model_config = FROZEN

    list: str | None = Field(default=None, description="CSV file of items")
    glob: str | None = Field(default=None, description="pattern of input files, one item each")
    rows: tuple[ItemRow, ...] = ()
    catalog: dict[str, str] | None = Field(default=None, description="catalog filter")
    unit: Literal["series", "radiograph_knee", "full_leg", "subject_visit", "knee_longitudinal"] = (
        Field(
            default="series",
            description="what one item is (catalog selections): a series; one knee of a "
            "bilateral PA knee radiograph (two items per film); a full-leg film; all series of "
            "a subject at a visit; one knee across visits",
        )
    )
    qc_rejected: Literal["flag", "exclude"] = Field(
        default="flag",
        description="knees a reviewer rejected (kneescope qc import): 'flag' runs them and "
        "marks their rows qc_review = reject; 'exclude' leaves them out of the run. Cohort "
        "steps never see them either way",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ItemsConfig:
        given = [
            n
            for n, v in (
                ("list", self.list),
                ("glob", self.glob),
                ("rows", self.rows),
                ("catalog", self.catalog),
            )
            if v
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one item source (list, glob, rows or catalog); "
                f"found {given or 'none'}"
            )
        if self.unit != "series" and self.catalog is None:
            raise ValueError(
                f"unit {self.unit!r} needs a catalog selection (items.catalog = {{...}}); "
                "lists, patterns and rows give one series per item"
            )
        return self


class StepConfig(BaseModel):
    """One step: a name registered under the ``kneescope.steps`` entry points, plus options."""

    model_config = FROZEN

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ExecutorConfig(BaseModel):
    """Where items run.

    kind:
        ``local`` in-process (default, nothing to start); ``dask`` a LocalCluster of
        ``workers`` processes x ``threads_per_worker`` threads, ``memory_limit`` each;
        ``address`` an existing scheduler; ``slurm``/``pbs`` dask-jobqueue jobs, one worker
        per job (``queue``, ``account``, ``cores``, ``memory``, ``walltime``, ``gpus``,
        ``job_extra``, ``job_name``: the name the jobs show in ``squeue``/``qstat``);
        ``gpu`` one worker per GPU in ``gpu_ids`` on this node.
    """

    model_config = FROZEN

    kind: Literal["local", "dask", "address", "slurm", "pbs", "gpu"] = "local"
    workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    processes: bool = True
    memory_limit: str = "auto"
    address: str | None = None
    queue: str | None = None
    account: str | None = None
    cores: int = Field(default=1, ge=1)
    memory: str = "4GB"
    walltime: str = "01:00:00"
    gpus: int = Field(default=0, ge=0)
    job_extra: tuple[str, ...] = ()
    job_name: str = Field(default="dask-worker", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    host: str | None = Field(default=None, description="bind scheduler and workers to this IP")
    gpu_ids: tuple[int, ...] = ()
    max_in_flight: int | None = Field(default=None, ge=1)
    allowed_failures: int = Field(default=2, ge=0)
    worker_timeout_s: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ExecutorConfig:
        if self.kind == "address" and not self.address:
            raise ValueError("kind 'address' needs address = 'tcp://host:port'")
        return self

    def in_flight_limit(self) -> int:
        """Bound on submitted-but-unfinished items (keeps driver memory flat)."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        if self.kind == "local":
            return 4
        return 2 * self.workers * self.threads_per_worker + 2


RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""A run name is one safe folder name: letters, digits, ``.``, ``_``, ``-``, starting with a
letter or digit (so never ``.``, ``..`` or a hidden folder), at most 100 characters."""


def is_run_name(name: str) -> bool:
    """True when ``name`` is a valid run name (see :data:`RUN_NAME_PATTERN`)."""
    return re.fullmatch(RUN_NAME_PATTERN, name) is not None


class PipelineConfig(BaseModel):
    """A whole cohort run. ``name`` is the run's folder under WS/runs/ (a safe name)."""

    model_config = FROZEN

    name: str
    items: ItemsConfig
    steps: tuple[StepConfig, ...] = Field(min_length=1)
    cohort_steps: tuple[StepConfig, ...] = Field(
        default=(),
        description="steps run once after every item, on the whole results table "
        "(registered under the kneescope.cohort_steps entry points)",
    )
    executor: ExecutorConfig = ExecutorConfig()
    max_attempts: int = Field(default=3, ge=1)
    output_format: Literal["parquet", "csv"] = "parquet"
    prefetch: int = Field(default=2, ge=0, description="items read ahead (local executor)")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not is_run_name(name):
            raise ValueError(
                f"{name!r} is not a run name: use a folder name of letters, digits, '.', '_' "
                "and '-' that starts with a letter or digit (at most 100 characters)"
            )
        return name
