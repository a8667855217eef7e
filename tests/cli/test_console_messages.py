"""What the console shows: one line per message, library warnings included, by -q/-v level."""

from __future__ import annotations

import logging
import warnings

import pytest

from kneescope.cli.logs import configure_console, console_level, reset_console


def _emit() -> None:
    logging.getLogger("kneescope.test").info("step 3 of 5")
    logging.getLogger("kneescope.test").warning("2 items had no side")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=1)


@pytest.mark.parametrize(
    ("verbose", "quiet", "shown"),
    [
        (0, True, set()),
        (0, False, {"warning", "py-warning"}),
        (1, False, {"info", "warning", "py-warning"}),
    ],
)
def test_console_shows_one_line_per_message_by_level(
    capsys: pytest.CaptureFixture[str], verbose: int, quiet: bool, shown: set[str]
) -> None:
    configure_console(verbose, quiet)
    try:
        _emit()
    finally:
        reset_console()
    lines = capsys.readouterr().err.splitlines()
    seen = set()
    for line in lines:
        if line == "info: step 3 of 5":
            seen.add("info")
        elif line == "warning: 2 items had no side":
            seen.add("warning")
        elif line.startswith("warning:") and line.endswith(
            "RuntimeWarning: invalid value encountered in divide"
        ):
            seen.add("py-warning")  # a library's warnings.warn, as one line
        else:
            pytest.fail(f"unexpected console line {line!r} in {lines}")
    assert seen == shown
    assert console_level(2, False) == logging.DEBUG
    # nothing stays installed after the command
    assert not any(type(h).__name__ == "_Console" for h in logging.getLogger().handlers)
