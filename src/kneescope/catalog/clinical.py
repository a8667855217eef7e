"""Import clinical tables (OAI- or MOST-style) into the catalog's long-format values.

Recognised layouts:

* **OAI**: a subject column ``ID`` (or ``ParticipantID``), optionally ``SIDE`` (1 = right,
  2 = left), and variables named ``V{vv}{NAME}`` such as ``V00XRKL`` -> visit ``V00``,
  variable ``XRKL``. Columns without a visit prefix (``SEX``) are subject-level (visit NULL).
* **MOST**: a subject column ``MOSTID`` and per-side variables ``V{v}X{L|R}{NAME}`` such as
  ``V0XLKL`` -> visit ``V00``, side left, variable ``XRKL`` (named as in the OAI, so KLG
  queries work across cohorts).

Values keep their text; ``value_num`` holds the leading code or number (``"2: definite
osteophytes"`` -> 2.0, ``"1.5"`` -> 1.5). Missing codes (empty, ``"."``, ``".: Missing"``,
``".A: ..."``) are skipped. A table is parsed completely before anything is written.

Refused with one line naming the file and line (nothing written): a quoting error (see
:func:`~kneescope.catalog.tables.read_table`), two values for one (subject, visit, side,
variable) in one table, or in two tables of one import with different text, and ``nan``,
``inf`` or a number beyond the float range (``-1e400``): never stored as NaN or infinity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, update

from kneescope.catalog.database import Catalog
from kneescope.catalog.rows import RowWriter
from kneescope.catalog.schema import ClinicalValue
from kneescope.catalog.tables import Table, read_table
from kneescope.errors import InputError

SUBJECT_COLUMNS = ("ID", "MOSTID", "ParticipantID", "subject", "subject_id", "PATID")
SIDE_COLUMNS = ("SIDE", "side", "knee_side")
_SKIP_COLUMNS = frozenset({"version", "readprj", "barcdbu", "barcode"})

_OAI_VAR = re.compile(r"^V(\d{2})([A-Z][A-Z0-9_]*)$")
_MOST_VAR = re.compile(r"^V(\d)X([LR])([A-Z][A-Z0-9_]*)$")
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?::.*)?$", re.DOTALL)


_NON_FINITE = frozenset(
    sign + word for sign in ("", "+", "-") for word in ("nan", "inf", "infinity")
)


def parse_value(text: str) -> tuple[str, float | None] | None:
    """``(text, number)`` for a cell, or None when the cell is empty or a missing code.

    ``"2: definite osteophytes"`` -> ("2: definite osteophytes", 2.0); ``"abc"`` ->
    ("abc", None); ``""``, ``"."``, ``".: Missing Form"`` -> None.

    Raises:
        ValueError: the cell is ``nan``/``inf`` text or a number beyond the float range
            (``-1e400``): never stored as NaN or infinity.
    """
    value = text.strip()
    if value.lower() in _NON_FINITE:
        raise ValueError(
            f"{value!r} is not a finite number; leave the cell empty (or '.') for a missing value"
        )
    match = _NUMBER.match(value)
    if not value or (value.startswith(".") and match is None):
        return None
    number = float(match.group(1)) if match else None
    if number is not None and not math.isfinite(number):
        raise ValueError(
            f"{value!r} is beyond the range of a 64-bit float; write it in range or leave "
            "the cell empty"
        )
    return value, number


def parse_side(text: str) -> str | None:
    """Side from an OAI/MOST side cell: ``1``/``1: Right``/``R``/``right`` -> right, etc.

    Raises:
        ValueError: the cell is non-empty but names no side.
    """
    value = text.strip().upper()
    if not value:
        return None
    code = value.split(":", 1)[0].strip()
    if code in {"1", "R", "RIGHT"} or value.startswith("RIGHT"):
        return "right"
    if code in {"2", "L", "LEFT"} or value.startswith("LEFT"):
        return "left"
    raise ValueError(f"side {text!r} is not 1 (right), 2 (left), R or L")


@dataclass(frozen=True)
class ClinicalCell:
    """One parsed value: subject code, visit code or None, side or None, variable, value."""

    subject: str
    visit: str | None
    side: str | None
    variable: str
    value_text: str
    value_num: float | None

    @property
    def key(self) -> str:
        return f"{self.subject}|{self.visit or ''}|{self.side or ''}|{self.variable}"


def _variable(column: str) -> tuple[str | None, str | None, str]:
    """(visit, side from the name, variable) of a column name."""
    name = column.strip().upper()
    most = _MOST_VAR.match(name)
    if most:
        side = "left" if most.group(2) == "L" else "right"
        return f"V{int(most.group(1)):02d}", side, f"XR{most.group(3)}"
    oai = _OAI_VAR.match(name)
    if oai:
        return f"V{oai.group(1)}", None, oai.group(2)
    return None, None, name


def parse_clinical_table(table: Table) -> tuple[str, list[ClinicalCell]]:
    """The cohort style (``oai`` or ``most``) and every value of a clinical table.

    Raises:
        InputError: no subject column, or a SIDE cell that names no side (with its line).
    """
    subject_col = table.column(*SUBJECT_COLUMNS)
    if subject_col is None:
        raise InputError(
            f"{table.path}: no subject column; expected one of {', '.join(SUBJECT_COLUMNS)}"
        )
    cohort = "most" if table.columns[subject_col].upper() == "MOSTID" else "oai"
    side_col = table.column(*SIDE_COLUMNS)
    variables = [
        (index, *_variable(name))
        for index, name in enumerate(table.columns)
        if index not in (subject_col, side_col) and name.lower() not in _SKIP_COLUMNS
    ]
    if not variables:
        raise InputError(f"{table.path}: no variable columns besides the subject and side")
    cells: dict[str, ClinicalCell] = {}
    first_line: dict[str, int] = {}
    first_row: dict[str, tuple[str, ...]] = {}
    for row_index, row in enumerate(table.rows):
        line = table.line_of(row_index)
        subject = row[subject_col]
        if not subject:
            raise InputError(f"{table.path}, line {line}: empty subject id")
        row_side: str | None = None
        if side_col is not None:
            try:
                row_side = parse_side(row[side_col])
            except ValueError as exc:
                raise InputError(f"{table.path}, line {line}: {exc}") from None
        for index, visit, name_side, variable in variables:
            try:
                parsed = parse_value(row[index])
            except ValueError as exc:
                raise InputError(
                    f"{table.path}, line {line}, column {table.columns[index]}: {exc}"
                ) from None
            if parsed is None:
                continue
            cell = ClinicalCell(
                subject=subject,
                visit=visit,
                side=name_side or row_side,
                variable=variable,
                value_text=parsed[0],
                value_num=parsed[1],
            )
            if cell.key in cells:
                project = table.column("READPRJ")
                raise InputError(
                    f"{table.path}, line {line}: a second value of {_describe(cell)} (the "
                    f"first is on line {first_line[cell.key]}); keep one row per subject"
                    + (" and side" if side_col is not None else "")
                    + (
                        f" (READPRJ {row[project]!r} and "
                        f"{first_row[cell.key][project]!r}: import one "
                        "reading project's rows)"
                        if project is not None
                        else ""
                    )
                )
            cells[cell.key] = cell
            first_line[cell.key] = line
            first_row[cell.key] = row
    return cohort, list(cells.values())


def _describe(cell: ClinicalCell) -> str:
    """``subject 9000099, visit V00, side right, variable XRKL`` (visit/side when present)."""
    parts = [f"subject {cell.subject}"]
    if cell.visit:
        parts.append(f"visit {cell.visit}")
    if cell.side:
        parts.append(f"side {cell.side}")
    parts.append(f"variable {cell.variable}")
    return ", ".join(parts)


@dataclass(frozen=True)
class ClinicalImport:
    """What one clinical import did."""

    path: str
    cohort: str
    subjects: int
    values_added: int
    values_updated: int
    values_unchanged: int


def import_clinical_table(catalog: Catalog, path: Path) -> ClinicalImport:
    """Parse ``path`` and upsert its values in one transaction (idempotent on re-import).

    Raises:
        InputError: see :func:`read_table` and :func:`parse_clinical_table`.
    """
    return import_clinical_tables(catalog, [path])[0]


@dataclass(frozen=True)
class ParsedTable:
    """A clinical table parsed and checked, ready to write: its path, style and values."""

    path: Path
    cohort: str
    cells: list[ClinicalCell]


def parse_clinical_tables(paths: list[Path]) -> list[ParsedTable]:
    """Parse and check every table without writing anything.

    Raises:
        InputError: see :func:`read_table` and :func:`parse_clinical_table`; or two tables
            give different values for one (subject, visit, side, variable).
    """
    parsed = [ParsedTable(path, *parse_clinical_table(read_table(path))) for path in paths]
    seen: dict[str, tuple[Path, ClinicalCell]] = {}
    for table in parsed:
        for cell in table.cells:
            other = seen.setdefault(cell.key, (table.path, cell))
            if other[0] != table.path and other[1].value_text != cell.value_text:
                raise InputError(
                    f"{table.path} and {other[0]} give different values of {_describe(cell)} "
                    f"({cell.value_text!r}, {other[1].value_text!r}); import one of them"
                )
    return parsed


def import_clinical_tables(catalog: Catalog, paths: list[Path]) -> list[ClinicalImport]:
    """Parse every table first (a bad one means nothing is written), then upsert each.

    Raises:
        InputError: see :func:`parse_clinical_tables`.
    """
    return write_clinical_tables(catalog, parse_clinical_tables(paths))


def write_clinical_tables(catalog: Catalog, tables: list[ParsedTable]) -> list[ClinicalImport]:
    """Upsert the values of tables from :func:`parse_clinical_tables`, one transaction each."""
    return [_write_cells(catalog, t.path, t.cohort, t.cells) for t in tables]


def _write_cells(
    catalog: Catalog, path: Path, cohort: str, cells: list[ClinicalCell]
) -> ClinicalImport:
    added = updated = unchanged = 0
    source = str(path.absolute())
    with catalog.session() as session:
        writer = RowWriter(session, cohort=cohort)
        subject_ids = writer.subject_ids({c.subject for c in cells})
        existing: dict[str, tuple[int, str | None, float | None]] = {}
        keys = [c.key for c in cells]
        for start in range(0, len(keys), 2000):
            chunk = keys[start : start + 2000]
            for row_id, key, text, num in session.execute(
                select(
                    ClinicalValue.id,
                    ClinicalValue.key,
                    ClinicalValue.value_text,
                    ClinicalValue.value_num,
                ).where(ClinicalValue.key.in_(chunk))
            ):
                existing[key] = (row_id, text, num)
        inserts: list[dict[str, object]] = []
        updates: list[dict[str, object]] = []
        for cell in cells:
            values: dict[str, object] = {
                "key": cell.key,
                "subject_id": subject_ids[cell.subject],
                "visit": cell.visit,
                "side": cell.side,
                "variable": cell.variable,
                "value_text": cell.value_text,
                "value_num": cell.value_num,
                "source": source,
            }
            old = existing.get(cell.key)
            if old is None:
                inserts.append(values)
            elif (old[1], old[2]) == (cell.value_text, cell.value_num):
                unchanged += 1
            else:
                updates.append({"id": old[0], **values})
        if inserts:
            session.execute(insert(ClinicalValue), inserts)
        if updates:
            session.execute(update(ClinicalValue), updates)
        added, updated = len(inserts), len(updates)
    return ClinicalImport(
        path=source,
        cohort=cohort,
        subjects=len(subject_ids),
        values_added=added,
        values_updated=updated,
        values_unchanged=unchanged,
    )
