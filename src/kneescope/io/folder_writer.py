"""Output files of a step or command, each written atomically, and JSON-ready values.

:data:`Writer` is what cohort-level steps and commands hand to a capability's ``write_outputs``:
``write(filename, content) -> absolute path``, content as text, bytes or ``f(tmp_path)``
(``CohortContext.write_output`` is one; :func:`folder_writer` makes one for any folder).
:func:`json_ready` turns numpy numbers and NaN/inf into what strict JSON takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Writer = Callable[[str, str | bytes | Callable[[Path], object]], str]
"""``write(filename, content)`` -> absolute path; content as text, bytes or ``f(tmp_path)``."""


def write_into(folder: Path, filename: str, content: str | bytes | Callable[[Path], object]) -> str:
    """Write ``folder/filename`` atomically (``folder`` created); returns its absolute path.

    A reader never sees half a file; a failed write leaves the old one.
    """
    from kneescope.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / filename
    if isinstance(content, str):
        atomic_write_text(final, content)
    elif isinstance(content, bytes):
        atomic_write_bytes(final, content)
    else:
        atomic_write(final, content)
    return str(final)


def folder_writer(folder: Path) -> Writer:
    """A :data:`Writer` into ``folder`` (created on the first write), each file atomic."""

    def write(filename: str, content: str | bytes | Callable[[Path], object]) -> str:
        return write_into(folder, filename, content)

    return write


def json_ready(value: Any) -> Any:
    """``value`` with NaN/inf as None and numpy numbers as Python numbers (recursively through
    dicts, lists and tuples; dict keys become text)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
