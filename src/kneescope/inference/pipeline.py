"""Segment many volumes with the phases of neighbouring volumes overlapped (pipelining).

:meth:`Segmenter.segment` runs three phases one after the other: ``prepare`` (CPU: reorient,
resample, intensity statistics), ``infer`` (the network on its device) and ``finish`` (CPU:
clean-up, back to the input grid). Over many volumes :func:`segment_many` runs them as a
three-stage pipeline:

- a reader thread loads volume n+1 (the caller's ``load``: a file read, say) and prepares it,
- the calling thread runs the network pass of volume n,
- ``finish_workers`` threads finish volume n-1 (and run the caller's ``after``: writing its
  outputs, say),

so on a GPU the host work of one volume hides behind the network pass of the next, and on a
CPU the single-threaded NumPy/SciPy phases fill the cores the network pass leaves idle. The
results are the same as :meth:`Segmenter.segment`'s, volume by volume (the phases are the
same calls on the same data), and come back in input order.

Memory is bounded: at most ``read_ahead`` prepared volumes wait for the network, one is in
it, and at most ``finish_workers`` are being finished (plus the results the caller holds).

A volume whose ``load``, phases or ``after`` raise an input error (a kneescope error, an OS
error, running out of host or device memory) comes back with the error in one line and the
others go on; any other exception is a bug and is raised in the calling thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from kneescope.core import Volume
from kneescope.errors import KneescopeError

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")


class PhasedSegmenter(Protocol[P, R]):
    """What :func:`segment_many` drives: :class:`~kneescope.inference.segmenter.Segmenter`
    (``P`` = ``Prepared``, ``R`` = ``RawSegmentation``), or any object with its three phases."""

    def prepare(self, image: Volume, side: str | None = None) -> P: ...

    def infer(self, prepared: P) -> R: ...

    def finish(self, raw: R) -> Any: ...


def is_input_error(exc: BaseException) -> bool:
    """True for an error that fails only its volume: a kneescope error, an OS error, running
    out of host memory or of device memory (``torch.cuda.OutOfMemoryError``)."""
    return isinstance(exc, KneescopeError | OSError | MemoryError) or (
        type(exc).__name__ == "OutOfMemoryError"
    )


@dataclass(frozen=True)
class Segmented(Generic[T]):
    """One input after :func:`segment_many`.

    Attributes:
        item: the input as the caller gave it.
        segmentation: the :class:`~kneescope.inference.segmenter.Segmentation` (``None``
            when the volume failed).
        after: what the caller's ``after`` returned for it (``None`` without one).
        error: ``"<phase>: <ErrorType>: <message>"`` (one line) when it failed, else ``""``.
        exception: the input error itself (to raise it again: a command that stops at the
            first bad input), else ``None``.
        seconds: wall seconds of this volume's stages: ``load``, ``prepare``, ``infer``,
            ``finish``, ``after`` (those that ran). They overlap other volumes' stages, so
            they add up to more than the run's wall time per volume.
    """

    item: T
    segmentation: Any = None
    after: Any = None
    error: str = ""
    exception: BaseException | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class _Work(Generic[T]):
    """One volume moving through the stages (mutable; never leaves this module)."""

    item: T
    state: Any = None
    seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""
    exception: BaseException | None = None
    after: Any = None


def _stage(work: _Work[T], name: str, call: Callable[[], Any]) -> None:
    """Run one stage of one volume: its result becomes the state, its wall time is kept, an
    input error is recorded (later stages then skip the volume), anything else is raised."""
    if work.error:
        return
    start = time.perf_counter()
    try:
        result = call()
    except Exception as exc:
        if not is_input_error(exc):
            raise
        work.error = f"{name}: {type(exc).__name__}: {exc}".replace("\n", " ")
        work.exception = exc
        work.state = None
    else:
        if name == "after":
            work.after = result
        else:
            work.state = result
    finally:
        work.seconds[name] = time.perf_counter() - start


def segment_many(
    segmenter: PhasedSegmenter[Any, Any],
    items: Iterable[T],
    load: Callable[[T], tuple[Volume, str | None]],
    *,
    after: Callable[[T, Any], Any] | None = None,
    overlap: bool = True,
    read_ahead: int = 1,
    finish_workers: int = 1,
) -> Iterator[Segmented[T]]:
    """Segment every item, yielding one :class:`Segmented` per item in input order.

    Args:
        segmenter: a :class:`~kneescope.inference.segmenter.Segmenter` (its model loaded once).
        items: anything the caller identifies volumes by (paths, catalog records, ...).
        load: ``item -> (image, side)``: the 3D image and the knee's side (``None``: the
            image's own record); runs on the reader thread.
        after: ``(item, segmentation) -> value`` run on a finishing thread right after the
            volume's ``finish`` (e.g. writing its output files), so it overlaps too.
        overlap: False runs every stage in the calling thread, one volume after the other
            (the same results; the reference the pipelined run is measured against).
        read_ahead: volumes loaded and prepared ahead of the network (>= 1).
        finish_workers: threads finishing volumes (>= 1); more than one pays only where
            finishing takes longer than the network pass (a GPU) and releases the GIL.

    Raises:
        ValueError: ``read_ahead`` or ``finish_workers`` below 1.
        Exception: any error that is not an input error (:func:`is_input_error`), as raised.
    """
    if read_ahead < 1 or finish_workers < 1:
        raise ValueError("read_ahead and finish_workers must be at least 1")

    def front(item: T) -> _Work[T]:
        work: _Work[T] = _Work(item)
        _stage(work, "load", lambda: load(item))
        if not work.error:
            image, side = work.state
            _stage(work, "prepare", lambda: segmenter.prepare(image, side))
        return work

    def back(work: _Work[T]) -> Segmented[T]:
        _stage(work, "finish", lambda: segmenter.finish(work.state))
        if after is not None and not work.error:
            segmentation = work.state
            _stage(work, "after", lambda: after(work.item, segmentation))
        return Segmented(
            item=work.item,
            segmentation=None if work.error else work.state,
            after=work.after,
            error=work.error,
            exception=work.exception,
            seconds=dict(work.seconds),
        )

    if not overlap:
        for item in items:
            work = front(item)
            _stage(work, "infer", lambda: segmenter.infer(work.state))  # noqa: B023
            yield back(work)
        return

    yield from _pipelined(segmenter, iter(items), front, back, read_ahead, finish_workers)


def _pipelined(
    segmenter: PhasedSegmenter[Any, Any],
    items: Iterator[T],
    front: Callable[[T], _Work[T]],
    back: Callable[[_Work[T]], Segmented[T]],
    read_ahead: int,
    finish_workers: int,
) -> Iterator[Segmented[T]]:
    """The threaded pipeline (see :func:`segment_many`)."""
    reader = ThreadPoolExecutor(1, thread_name_prefix="kneescope-prepare")
    finisher = ThreadPoolExecutor(finish_workers, thread_name_prefix="kneescope-finish")
    fronts: deque[Future[_Work[T]]] = deque()
    backs: deque[Future[Segmented[T]]] = deque()
    exhausted = threading.Event()

    def refill() -> None:
        while not exhausted.is_set() and len(fronts) < read_ahead:
            try:
                item = next(items)
            except StopIteration:
                exhausted.set()
                return
            fronts.append(reader.submit(front, item))

    try:
        refill()
        while fronts:
            work = fronts.popleft().result()  # a bug in a stage is raised here
            refill()  # the next volume loads while this one is in the network
            _stage(work, "infer", lambda: segmenter.infer(work.state))  # noqa: B023
            # Hand the volume on; keep at most finish_workers of them finishing, and give
            # back every finished one in input order.
            backs.append(finisher.submit(back, work))
            while backs and (backs[0].done() or len(backs) > finish_workers):
                yield backs.popleft().result()
        while backs:
            yield backs.popleft().result()
    finally:
        for pending in fronts:
            pending.cancel()
        for finishing in backs:
            finishing.cancel()
        reader.shutdown(wait=True, cancel_futures=True)
        finisher.shutdown(wait=True, cancel_futures=True)
