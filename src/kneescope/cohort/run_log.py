"""The run's log file, ``RUN/run.log``: every message of every session of a run, appended.

While a run's driver works, :func:`run_log` adds a handler on the root logger that writes
kneescope's messages at INFO and above (and every library's warnings, including those raised
with :mod:`warnings`) to ``RUN/run.log``, whatever the console shows (``-q``/``-v``). Items run
by the local executor log in the driver's process, so their messages land there directly; the
Dask executors forward their workers' ``kneescope`` records to the driver
(:meth:`distributed.Client.forward_logging`), which writes them here too.

A session starts with a ``session started`` line and ends with how it ended; an exception that
escapes the run is written with its traceback (the console shows one line).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from kneescope import __version__
from kneescope.errors import KneescopeError

RUN_LOG_NAME = "run.log"
"""File name of a run's log, in its run folder."""

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
"""One line per record: time, level, process, logger, message (tracebacks follow it)."""

log = logging.getLogger(__name__)

_active: list[tuple[logging.Handler, Path]] = []
"""The run logs open in this process (the innermost last)."""


class _Flushing(logging.FileHandler):
    """A file handler whose records reach the disk as they are written (a run may be killed)."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self.flush()


def _file_handler(path: Path) -> logging.FileHandler:
    handler = _Flushing(path, mode="a", encoding="utf-8", delay=False)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[Path]:
    """Append this session's messages to ``run_dir/run.log`` while the block runs.

    The ``kneescope`` logger is opened to INFO for the block (the console handler the CLI
    installs keeps its own level), warnings from :mod:`warnings` are routed through logging
    (``py.warnings``), and both are restored afterwards. Yields the log file's path.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_LOG_NAME
    handler = _file_handler(path)
    root = logging.getLogger()
    ours = logging.getLogger("kneescope")
    old_level = ours.level
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    captured = getattr(logging, "_warnings_showwarning", None) is not None
    root.addHandler(handler)
    _active.append((handler, path))
    logging.captureWarnings(True)
    log.info("session started: kneescope %s, driver pid %d", __version__, os.getpid())
    try:
        yield path
    except KeyboardInterrupt:
        _to_file(handler, logging.WARNING, "session interrupted (Ctrl-C or a signal)")
        raise
    except KneescopeError as exc:
        _to_file(handler, logging.ERROR, f"session failed: {exc}")
        raise
    except BaseException as exc:
        _to_file(handler, logging.ERROR, f"session stopped by an error: {exc!r}", exc)
        raise
    else:
        _to_file(handler, logging.INFO, "session ended")
    finally:
        if not captured:
            logging.captureWarnings(False)
        _active.remove((handler, path))
        root.removeHandler(handler)
        handler.close()
        ours.setLevel(old_level)


def _to_file(
    handler: logging.Handler, level: int, message: str, exc: BaseException | None = None
) -> None:
    """Write one record to the run log only (the console already gets the error line)."""
    record = log.makeRecord(
        log.name,
        level,
        __file__,
        0,
        message,
        (),
        None if exc is None else (type(exc), exc, exc.__traceback__),
    )
    handler.handle(record)


def write_to_run_log(message: str, exc: BaseException | None = None) -> Path | None:
    """Write an ERROR record (with ``exc``'s traceback) to the open run log only, not to the
    console: for a step's bug, whose one-line error the console shows anyway. Returns the
    log file's path, or None when no run log is open in this process (a Dask worker: there
    log the error normally; it is forwarded to the driver's log).
    """
    if not _active:
        return None
    handler, path = _active[-1]
    _to_file(handler, logging.ERROR, message, exc)
    return path
