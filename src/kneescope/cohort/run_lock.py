"""One driver per run: an exclusive ``flock`` on RUN/driver.lock.

The kernel drops the lock when the driver exits or is killed (even with kill -9), so a stale
lock never blocks a resume.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from kneescope.errors import RunError


class RunLock:
    """Held while a driver runs; ``RunLock.is_held(run_dir)`` asks without taking it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "driver.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunError(
                f"another driver is running {self.path.parent.name} (lock {self.path}); "
                "wait for it or stop it, then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def is_held(run_dir: Path) -> bool:
        """True while a driver holds the run's lock."""
        path = run_dir / "driver.lock"
        if not path.exists():
            return False
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False
