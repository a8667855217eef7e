"""Options and output helpers shared by every command.

Every command takes ``--workspace/-w`` and ``--catalog``; every command that reports something
takes ``--json``. Output goes to stdout (tables or JSON); progress and messages to stderr.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from kneescope.workspace import CATALOG_ENV, WORKSPACE_ENV, Workspace

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar=WORKSPACE_ENV,
        help="Workspace folder (catalog, store, models, runs). Default: current directory.",
        show_default=False,
    ),
]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        envvar=CATALOG_ENV,
        help="SQLAlchemy URL of the catalog database. Default: WORKSPACE/catalog.sqlite.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout.")]


def workspace(root: Path | None, catalog: str | None) -> Workspace:
    """Resolve the workspace from the shared options."""
    return Workspace.resolve(root, catalog)


def stdout() -> Console:
    return Console(soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True)


def emit(payload: Any, as_json: bool, render: Callable[[Console], None]) -> None:
    """Print ``payload`` as JSON when ``as_json``, else call ``render`` with a console.

    The JSON is strict (RFC 8259): NaN and +-Infinity, which no JSON parser but Python's
    accepts, become ``null`` (see :func:`json_safe`).
    """
    if as_json:
        sys.stdout.write(to_json(payload) + "\n")
        sys.stdout.flush()
    else:
        render(stdout())


def to_json(payload: Any) -> str:
    """``payload`` as strict, indented JSON (non-finite numbers as null, paths as text)."""
    return json.dumps(json_safe(payload), indent=2, default=str, allow_nan=False)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Inf) replaced by None, recursively.

    Dicts, lists and tuples are walked; numpy scalars and arrays become Python numbers and
    lists first. Anything else is returned as is (``json.dumps(default=str)`` prints it).
    """
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist) and hasattr(value, "dtype"):
        return json_safe(tolist())
    return value


@contextmanager
def counting_progress(description: str, *, show: bool) -> Iterator[Callable[[int, int], None]]:
    """A transient rich progress bar on stderr; yields a ``progress(done, total)`` callback.

    With ``show`` false (JSON output, or stderr not a terminal) the callback does nothing.
    """
    if not show:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress
