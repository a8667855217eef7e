"""Typed result columns: what a capability's step puts in the results table, with units.

A step declares its columns as a class attribute ``results: tuple[ResultColumn, ...]`` and
the capability it belongs to as ``capability: str``. The runner checks every value a step
returns against its declared columns, and the catalog stores each value with its unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ValueKind = Literal["float", "int", "str", "bool"]


@dataclass(frozen=True)
class ResultColumn:
    """One result column.

    Attributes:
        name: column name (unique across a pipeline's steps), snake_case with the unit as
            a suffix where it has one (``cartilage_thickness_mean_mm``).
        kind: value type.
        unit: unit of the value (``"mm"``, ``"mm3"``, ``"s"``, ``"1"`` for counts and
            ratios, ``""`` for text and flags).
        description: one line for the docs and exports.
    """

    name: str
    kind: ValueKind = "float"
    unit: str = ""
    description: str = ""
