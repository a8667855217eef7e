"""Test-only cohort steps, plugged in through the ``kneescope.steps`` entry-point group.

``test_slow_read`` / ``test_slow_compute`` time reading against compute (prefetch tests);
``test_marks_on_init`` writes a marker file when it is instantiated (a dry run must not).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.cohort.builtin_steps import BaseStep
from kneescope.cohort.item import Item
from kneescope.cohort.step import StepContext, StepResult

READ_S = 0.15
COMPUTE_S = 0.15


class SlowRead(BaseStep):
    """An I/O step: waits READ_S, then hands the item id on as ``token``."""

    name = "test_slow_read"
    writes: ClassVar[tuple[str, ...]] = ("token",)
    prefetchable = True

    def run(self, item: Item, context: StepContext) -> StepResult:
        with context.phase("read"):
            time.sleep(READ_S)
        return StepResult(data={"token": item.item_id})


class SlowCompute(BaseStep):
    """A compute step reading ``token``; its model hash is the ``model`` option's text."""

    name = "test_slow_compute"
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
    path_options = ("marker",)

    def __init__(self, marker: str) -> None:
        Path(marker).write_text("instantiated\n")

    def run(self, item: Item, context: StepContext) -> StepResult:
        return StepResult(values={"marked": True})
