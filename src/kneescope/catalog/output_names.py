"""File names of a cataloged series' outputs: one canonical, file-name-safe stem per series.

``9009528_V00_left_DESS_s5``: subject, visit, side, sequence and ``s<catalog id>``, each part
reduced to a safe token (letters, digits, ``_``, ``-`` and inner ``.``; never ``/``, ``\\``,
``..`` or a leading dot), joined by ``_``. The ``s<id>`` part makes the stem unique within a
catalog, so two series never share output names however their subjects are spelled
(``a/b`` becomes ``a-b``, ``a b`` too, and each keeps its own id). ``kneescope export`` and
``kneescope segment`` name the same series the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.queries import SeriesRecord

_UNSAFE = re.compile(r"(?:[^A-Za-z0-9._-]|\.{2,})+")


def safe_token(text: str, *, empty: str = "x") -> str:
    """``text`` as one file-name token: each run of characters other than letters, digits,
    ``.``, ``_`` and ``-`` (and of ``..``) becomes one ``-``; leading/trailing ``.``/``-``/``_`` are
    dropped; at most 100 characters.

    The result never holds a path separator or ``..`` and never starts with a dot; ``empty``
    when nothing is left.
    """
    token = _UNSAFE.sub("-", text).strip("._-")
    return token[:100].strip("._-") or empty


def series_stem(record: SeriesRecord) -> str:
    """Canonical output stem of a cataloged series, e.g. ``9009528_V00_left_DESS_s5``."""
    parts = [record.subject or "unknown", record.visit, record.side, record.sequence]
    tokens = [safe_token(p) for p in parts if p]
    return "_".join([*tokens, f"s{int(record.id)}"])


def records_by_path(catalog: Catalog, paths: list[Path]) -> dict[Path, SeriesRecord]:
    """The cataloged series whose folder or file is one of ``paths`` (resolved), by path."""
    from kneescope.catalog.queries import list_series

    wanted = {p.resolve() for p in paths}
    if not wanted:
        return {}
    found: dict[Path, SeriesRecord] = {}
    for record in list_series(catalog):
        try:
            where = Path(record.path).resolve()
        except (OSError, RuntimeError):
            continue
        if where in wanted:
            found.setdefault(where, record)
    return found
