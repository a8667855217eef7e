"""The console script: fast help, version, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from kneescope import __version__


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kneescope", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_commands_and_the_global_options() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for word in ("kneescope", "run", "segment", "--verbose", "--quiet"):
        assert word in result.stdout
    # that it stays fast is test_help_imports_no_heavy_library's business (no wall clock here)


@pytest.mark.slow  # a wall-clock figure: not in the default suite
def test_help_is_fast() -> None:
    _run("--help")  # warm the file cache
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        result = _run("--help")
        best = min(best, time.perf_counter() - t0)
    assert result.returncode == 0
    assert best < 1.5, f"`kneescope --help` took {best:.2f} s"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from kneescope.cli.app import app; "
        "heavy = [m for m in ('torch', 'monai', 'dask', 'SimpleITK', 'zarr', 'sqlalchemy') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_unknown_command_fails_without_traceback() -> None:
    result = _run("no-such-command")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
