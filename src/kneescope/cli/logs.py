"""What the console shows of kneescope's messages: ``-q/--quiet``, default, ``-v``, ``-vv``.

The CLI installs one handler on the root logger that writes to stderr, one line per message
(``warning: ...``), at the level the global options choose:

=============  ======================================================================
``-q``         errors only
(default)      warnings and errors, from kneescope and from the libraries it uses
``-v``         also kneescope's progress messages (INFO)
``-vv``        also kneescope's debugging messages (DEBUG)
=============  ======================================================================

Warnings raised with :mod:`warnings` (library deprecations, numerical warnings) go through
the same handler (``logging.captureWarnings``), so none is printed in another format or lost.
A cohort run also writes every message at INFO and above to its ``RUN/run.log`` whatever the
console level (:mod:`kneescope.cohort.run_log`).
"""

from __future__ import annotations

import logging
import sys

_LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}


class _OneLine(logging.Formatter):
    """``warning: message`` (``-vv``: ``debug kneescope.io.nifti: message``)."""

    def __init__(self, with_name: bool) -> None:
        super().__init__()
        self.with_name = with_name

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.name == "py.warnings":  # "file:line: Category: message" + the source line
            text = (text.strip().splitlines() or [""])[0]
        if record.exc_info and self.with_name:
            text += "\n" + self.formatException(record.exc_info)
        where = f" {record.name}" if self.with_name else ""
        return f"{record.levelname.lower()}{where}: {text}"


class _Console(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment (tests and progress bars replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


_installed: tuple[logging.Handler, int, bool] | None = None


def console_level(verbose: int, quiet: bool) -> int:
    """The console's logging level for ``-v`` given ``verbose`` times and ``-q``."""
    if quiet:
        return _LEVELS[-1]
    return _LEVELS.get(verbose, logging.DEBUG)


def configure_console(verbose: int = 0, quiet: bool = False) -> None:
    """Install (or re-level) the console handler; see the module docstring."""
    global _installed
    reset_console()
    level = console_level(verbose, quiet)
    handler = _Console()
    handler.setLevel(level)
    handler.setFormatter(_OneLine(with_name=level <= logging.DEBUG))
    ours = logging.getLogger("kneescope")
    old_level = ours.level
    # kneescope's INFO records are made even when the console hides them: a run's log keeps them
    ours.setLevel(min(level, logging.INFO))
    captured = getattr(logging, "_warnings_showwarning", None) is not None
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)
    _installed = (handler, old_level, captured)


def reset_console() -> None:
    """Remove what :func:`configure_console` installed (``main`` does at its end)."""
    global _installed
    if _installed is None:
        return
    handler, old_level, captured = _installed
    _installed = None
    logging.getLogger().removeHandler(handler)
    logging.getLogger("kneescope").setLevel(old_level)
    if not captured:
        logging.captureWarnings(False)
