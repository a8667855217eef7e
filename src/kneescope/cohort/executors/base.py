"""The executor interface the runner drives.

The runner submits at most ``limit`` items at a time and waits for any one to finish, so the
driver holds only the in-flight items in memory, however large the cohort.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from kneescope.cohort.item_task import TaskOutcome, TaskPayload


@dataclass(frozen=True)
class Finished:
    """One finished submission: an outcome, or ``lost`` with why (worker died, cancelled)."""

    payload: TaskPayload
    outcome: TaskOutcome | None
    lost: str = ""


class Executor(ABC):
    """Runs item tasks somewhere. Lifecycle: ``start()``, submit/next_finished, ``close()``.

    Class attributes:
        kind: the config name of the executor.
        isolates_workers: a worker dying does not take the driver down (false in-process).
    """

    kind: ClassVar[str]
    isolates_workers: ClassVar[bool]

    @abstractmethod
    def start(self) -> None:
        """Acquire workers (start a cluster, submit jobs, connect)."""

    @abstractmethod
    def submit(self, payload: TaskPayload) -> None:
        """Queue one item."""

    @abstractmethod
    def next_finished(self) -> Finished:
        """Block until any submitted item finishes; raise RuntimeError when none is pending."""

    @abstractmethod
    def cancel_all(self) -> None:
        """Drop every queued or running item (Ctrl-C)."""

    @abstractmethod
    def close(self) -> None:
        """Release workers and any cluster the executor started. Safe to call twice."""

    def describe(self) -> dict[str, Any]:
        """What runs the items (for logs and ``status``)."""
        return {"kind": self.kind}

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
