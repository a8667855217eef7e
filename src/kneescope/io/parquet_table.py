"""Write a table of rows as a Parquet file with typed columns and per-column units.

Each column has a kind (``float``, ``int``, ``bool``, ``str``, ``time``) that fixes its
Parquet type, so an all-missing column keeps its type and a reader never has to guess; a
column's unit (``mm``, ``mm3``, ...) is kept in the Parquet field metadata under ``unit``
(``pyarrow.parquet.read_schema(path).field(name).metadata``). Written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from kneescope.io.atomic import atomic_write_path

ColumnKind = Literal["float", "int", "bool", "str", "time"]


@dataclass(frozen=True)
class TableColumn:
    """One column: its name, kind and unit ("" when it has none)."""

    name: str
    kind: ColumnKind = "str"
    unit: str = ""


def _cell(value: Any, kind: ColumnKind) -> Any:
    """``value`` as the column's kind wants it; None (or NaN in a non-float column) missing."""
    if value is None:
        return None
    if kind == "float":
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    if kind == "time":
        if not isinstance(value, datetime):
            raise TypeError(f"a time column holds datetimes, not {type(value).__name__}")
        return value
    return str(value)


def write_parquet_table(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[TableColumn]
) -> Path:
    """Write ``rows`` (missing keys are missing values) as Parquet at ``path``, atomically.

    Returns ``path``. Its folder must exist.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "float": pa.float64(),
        "int": pa.int64(),
        "bool": pa.bool_(),
        "str": pa.string(),
        "time": pa.timestamp("us", tz="UTC"),
    }
    fields = [
        pa.field(c.name, types[c.kind], metadata={"unit": c.unit} if c.unit else None)
        for c in columns
    ]
    arrays = [
        pa.array([_cell(row.get(c.name), c.kind) for row in rows], type=types[c.kind])
        for c in columns
    ]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    with atomic_write_path(path) as tmp:
        pq.write_table(table, tmp)
    return path
