"""Read delimited text tables (CSV/TXT with ``,``, ``|``, ``;`` or tab) into header + rows.

Used by the clinical and manifest importers. Errors name the file and line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from kneescope.errors import InputError
from kneescope.io.guards import require_regular_file

_DELIMITERS = ("|", "\t", ",", ";")


@dataclass(frozen=True)
class Table:
    """A parsed table: column names (stripped) and rows of stripped strings, same length."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...] = ()
    """The file's line number of each row (blank lines are skipped, so not always i + 2)."""

    def line_of(self, index: int) -> int:
        """The line number of row ``index`` in the file (1 = the header)."""
        return self.lines[index] if self.lines else index + 2

    def column(self, *names: str) -> int | None:
        """Index of the first column whose name equals one of ``names`` (case-insensitive)."""
        lowered = [c.lower() for c in self.columns]
        for name in names:
            if name.lower() in lowered:
                return lowered.index(name.lower())
        return None


def _split_records(path: Path, lines: list[str], delimiter: str) -> list[list[str]]:
    """One list of fields per line; a record may not span lines.

    A quoted field that runs past the end of its line is almost always an unbalanced quote
    (it would swallow the following rows into one cell), so it is an error naming the line,
    as is text after a closing quote (``"a"b``).

    Raises:
        InputError: a quoting error, with the file and line.
    """
    records: list[list[str]] = []
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return records
        except csv.Error as exc:
            if reader.line_num > line or "end of data" in str(exc):
                raise InputError(
                    f"{path}, line {line}: a quoted field is never closed (unbalanced quote); "
                    "fix its quoting"
                ) from None
            raise InputError(
                f"{path}, line {line}: not a valid table row ({exc}); fix its quoting"
            ) from None
        if reader.line_num != line:
            raise InputError(
                f"{path}, line {line}: a quoted field runs on to line {reader.line_num} "
                "(unbalanced quote?); close the quote on its own line"
            )
        records.append(record)
        line += 1


def read_table(path: Path) -> Table:
    """Read a delimited text table; the delimiter is the most frequent one in the header.

    Raises:
        InputError: the file is unreadable, empty, not text, has duplicate or empty column
            names, a row whose field count differs from the header's, or a quoting error
            (an unbalanced quote, a quoted field spanning lines); each names the line; not
            a regular file (a FIFO would block the read for ever).
    """
    require_regular_file(path, what="table")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = path.read_text(encoding="latin-1")
        except OSError as exc:
            raise InputError(f"cannot read table {path}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read table {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise InputError(f"{path} is not a text table (binary content); give a CSV or TXT file")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputError(f"{path} is empty; expected a header line with column names")
    header = lines[0]
    delimiter = max(_DELIMITERS, key=header.count)
    if header.count(delimiter) == 0:
        raise InputError(
            f"{path}: header {header[:60]!r} has one column; expected columns separated "
            "by ',', '|', ';' or tabs"
        )
    raw_rows = _split_records(path, lines, delimiter)
    columns = tuple(c.strip() for c in raw_rows[0])
    if any(not c for c in columns):
        raise InputError(f"{path}: the header has an empty column name; name every column")
    lowered = [c.lower() for c in columns]
    dupes = sorted({c for c in lowered if lowered.count(c) > 1})
    if dupes:
        raise InputError(f"{path}: duplicate column names {dupes}; make them unique")
    rows = []
    numbers = []
    for number, raw in enumerate(raw_rows[1:], start=2):
        if not raw or all(not f.strip() for f in raw):
            continue
        if len(raw) != len(columns):
            raise InputError(
                f"{path}, line {number}: {len(raw)} fields, expected {len(columns)} "
                f"(as in the header); fix the row or its quoting"
            )
        rows.append(tuple(f.strip() for f in raw))
        numbers.append(number)
    return Table(path=path, columns=columns, rows=tuple(rows), lines=tuple(numbers))
