"""The embedded executor: items run in the driver process, one at a time, nothing to start.

Reading overlaps compute: the read stage (prefetchable I/O steps) of the next ``prefetch``
queued items runs on a reader thread while the current item computes.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kneescope.cohort.executors.base import Executor, Finished
from kneescope.cohort.item_task import StagedItem, TaskPayload, compute_stage, read_stage


class InProcessExecutor(Executor):
    """Run items in this process; prefetch reads on one reader thread."""

    kind = "local"
    isolates_workers = False

    def __init__(self, prefetch: int = 2) -> None:
        self.prefetch = prefetch
        self._queue: deque[tuple[TaskPayload, Future[StagedItem] | None]] = deque()
        self._reader: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self.prefetch > 0 and self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kneescope-read")

    def submit(self, payload: TaskPayload) -> None:
        self._queue.append((payload, None))
        self._fill_prefetch()

    def _fill_prefetch(self) -> None:
        if self._reader is None:
            return
        for index in range(min(self.prefetch, len(self._queue))):
            payload, future = self._queue[index]
            if future is None:
                self._queue[index] = (payload, self._reader.submit(read_stage, payload))

    def next_finished(self) -> Finished:
        if not self._queue:
            raise RuntimeError("next_finished() called with nothing submitted")
        payload, future = self._queue.popleft()
        staged = future.result() if future is not None else read_stage(payload)
        self._fill_prefetch()
        return Finished(payload=payload, outcome=compute_stage(staged))

    def cancel_all(self) -> None:
        for _, future in self._queue:
            if future is not None:
                future.cancel()
        self._queue.clear()

    def close(self) -> None:
        self.cancel_all()
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader = None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": 1, "prefetch": self.prefetch}
