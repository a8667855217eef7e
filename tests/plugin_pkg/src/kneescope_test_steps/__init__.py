"""Test-only cohort steps, plugged in through the ``kneescope.steps`` entry-point group.

``test_slow_read`` / ``test_slow_compute`` time reading against compute (prefetch tests);
``test_marks_on_init`` writes a marker file when it is instantiated (a dry run must not);
``sleep`` waits (fault tests); ``crash_once`` kills its worker process the first time it sees
an item; ``test_buggy`` raises a programming error (a bug, which stops a run) and
``test_misdeclared`` returns a value its declaration does not allow. The subpackage
:mod:`kneescope_test_steps.label_volume` is a whole capability (config, result columns with
units, step): the worked example of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, StepContext, StepResult

CAPABILITY = "test_steps"

READ_S = 0.15
COMPUTE_S = 0.15


class SlowRead(BaseStep):
    """An I/O step: waits READ_S, then hands the item id on as ``token``."""

    name = "test_slow_read"
    capability = CAPABILITY
    writes: ClassVar[tuple[str, ...]] = ("token",)
    prefetchable = True

    def run(self, item: Item, context: StepContext) -> StepResult:
        with context.phase("read"):
            time.sleep(READ_S)
        return StepResult(data={"token": item.item_id})


class SlowCompute(BaseStep):
    """A compute step reading ``token``; its model hash is the ``model`` option's text."""

    name = "test_slow_compute"
    capability = CAPABILITY
    results = (ResultColumn("echo", "str", "", "the token the read step handed on"),)
    reads: ClassVar[tuple[str, ...]] = ("token",)

    def __init__(self, model: str = "weights-a") -> None:
        self.model = model

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        return str(options.get("model", "weights-a"))

    def run(self, item: Item, context: StepContext) -> StepResult:
        with context.phase("infer"):
            time.sleep(COMPUTE_S)
        return StepResult(values={"echo": context.data["token"]})


class MarksOnInit(BaseStep):
    """Writes ``marker`` when built (proves whether something instantiated the step)."""

    name = "test_marks_on_init"
    capability = CAPABILITY
    results = (ResultColumn("marked", "bool", "", "always true"),)
    path_options = ("marker",)

    def __init__(self, marker: str) -> None:
        Path(marker).write_text("instantiated\n")

    def run(self, item: Item, context: StepContext) -> StepResult:
        return StepResult(values={"marked": True})


class Sleep(BaseStep):
    """Wait ``seconds``; with ``trace_dir`` first write ``<item_id>.<pid>.<job>`` there."""

    name = "sleep"
    capability = CAPABILITY
    results = (ResultColumn("slept_s", "float", "s", "how long the step waited"),)
    path_options = ("trace_dir",)

    def __init__(self, seconds: float = 0.1, trace_dir: str | None = None) -> None:
        self.seconds = seconds
        self.trace_dir = trace_dir

    def run(self, item: Item, context: StepContext) -> StepResult:
        if self.trace_dir is not None:
            job = os.environ.get("SLURM_JOB_ID", "-")
            (Path(self.trace_dir) / f"{item.item_id}.{os.getpid()}.{job}").touch()
        with context.phase("infer"):
            time.sleep(self.seconds)
        return StepResult(values={"slept_s": self.seconds})


class CrashOnce(BaseStep):
    """Kill the worker process the first ``times`` times an item runs (counted in a marker
    file in ``marker_dir``).

    Options:
        marker_dir: folder shared by all workers.
        item_ids: only these items crash (all when empty).
        how: "exit" (os._exit) or "kill" (SIGKILL to itself).
        times: how many attempts of an item crash before one succeeds.
    """

    name = "crash_once"
    capability = CAPABILITY
    results = (
        ResultColumn("crashed_pid", "int", "", "pid of the last worker that crashed (0: none)"),
        ResultColumn("ran_pid", "int", "", "pid of the worker that finished the item"),
    )
    path_options = ("marker_dir",)

    def __init__(
        self,
        marker_dir: str,
        item_ids: list[str] | None = None,
        how: str = "exit",
        times: int = 1,
    ) -> None:
        self.marker_dir = Path(marker_dir)
        self.item_ids = set(item_ids or [])
        self.how = how
        self.times = times

    def run(self, item: Item, context: StepContext) -> StepResult:
        marker = self.marker_dir / f"{item.item_id}.crashed"
        pids = marker.read_text().split() if marker.exists() else []
        if (not self.item_ids or item.item_id in self.item_ids) and len(pids) < self.times:
            with marker.open("a") as handle:
                handle.write(f"{os.getpid()}\n")
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(17)
        crashed_pid = int(pids[-1]) if pids else 0
        return StepResult(values={"crashed_pid": crashed_pid, "ran_pid": os.getpid()})


class Buggy(BaseStep):
    """A step with a programming error: divides by zero on every item, or only on the items
    in ``item_ids`` (the others pass)."""

    name = "test_buggy"
    capability = CAPABILITY
    results = (ResultColumn("ratio", "float", "1", "never produced"),)

    def __init__(self, item_ids: list[str] | None = None) -> None:
        self.item_ids = set(item_ids or [])

    def run(self, item: Item, context: StepContext) -> StepResult:
        if self.item_ids and item.item_id not in self.item_ids:
            return StepResult(values={"ratio": 1.0})
        return StepResult(values={"ratio": 1.0 / _zero()})


def _zero() -> float:
    return 0.0 * len(CAPABILITY)


class Misdeclared(BaseStep):
    """Returns what its declaration does not allow: ``mode`` "undeclared" (a column it does
    not declare), "kind" (text in a float column), "numpy" (a numpy float32, which JSON cannot
    store) or "none" (None instead of a StepResult)."""

    name = "test_misdeclared"
    capability = CAPABILITY
    results = (ResultColumn("size_mm", "float", "mm", "a length"),)

    def __init__(self, mode: str = "undeclared") -> None:
        self.mode = mode

    def run(self, item: Item, context: StepContext) -> StepResult:
        if self.mode == "kind":
            return StepResult(values={"size_mm": "3 mm"})
        if self.mode == "numpy":
            return StepResult(values={"size_mm": np.float32(3.0)})  # type: ignore[dict-item]
        if self.mode == "none":
            return None  # type: ignore[return-value]
        return StepResult(values={"size_mm": 3.0, "size_cm": 0.3})


class Undeclared:
    """A class registered as a step that does not derive from BaseStep and lacks
    ``capability`` and ``results`` (refused when a pipeline is built)."""

    name = "test_undeclared"
    version = "1"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    prefetchable = False

    def setup(self) -> None:
        return None

    def run(self, item: Item, context: StepContext) -> StepResult:
        return StepResult(values={"anything": 1})
