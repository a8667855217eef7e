"""Worker-process pools that a Ctrl-C stops cleanly (``convert``, ``ingest --jobs``)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while worker processes are started.

    SIGINT is blocked (the workers inherit the blocked mask, so a Ctrl-C sent to the whole
    process group reaches only the parent, which stops the pool and reports once, instead of
    every worker printing a traceback) and, should another thread take it, only noted (a
    KeyboardInterrupt in the middle of starting a worker leaves it reading a closed pipe).
    A Ctrl-C noted during the window is raised again when it ends: never lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
        if noted:
            signal.raise_signal(signal.SIGINT)  # through the handler that was in place
