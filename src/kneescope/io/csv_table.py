"""Spreadsheet-safe CSV tables, written atomically.

Every CSV kneescope writes for a user (biomarker tables, catalog listings, results tables) goes
through :func:`write_csv_table`:

- UTF-8, ``\\n`` line endings (never CRLF), a header row, columns in first-seen order;
- non-finite floats (NaN, ±Inf) written as empty cells, which pandas and spreadsheets read as
  missing;
- text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``,
  a tab or a carriage return) are prefixed with a single quote, as OWASP's advice on CSV
  injection recommends; numbers (also negative ones) are written as numbers;
- the file appears complete or not at all (:func:`~kneescope.io.atomic.atomic_write_path`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kneescope.io.atomic import atomic_write_path

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """One cell as it is written: empty for None/NaN/Inf, quoted-prefix for formula-like text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else ""
    if isinstance(value, int):
        return value
    text = str(value)
    if text.startswith(_FORMULA_STARTS) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def write_csv_table(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` as a spreadsheet-safe CSV at ``path`` (its folder must exist).

    Args:
        path: destination file; replaced atomically.
        rows: one mapping per row; missing keys become empty cells.
        columns: column order; default: :func:`table_columns` of ``rows``.

    Returns:
        ``path``.
    """
    cols = list(columns) if columns is not None else table_columns(rows)
    with atomic_write_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([safe_cell(c) for c in cols])
        for row in rows:
            writer.writerow([safe_cell(row.get(c)) for c in cols])
    return path
