"""The landmark capability's result columns: each landmark's position in mm.

Per landmark ``name``: ``<name>_row_mm`` and ``<name>_column_mm``, the position in the image
plane in mm from the centre of pixel (0, 0) (rows down, columns right).
"""

from __future__ import annotations

import re
from typing import Any

from kneescope.capabilities.landmarks.predict import LandmarkPrediction
from kneescope.cohort.result_schema import ResultColumn

CAPABILITY = "landmarks"


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "landmark"


def result_columns(landmarks: tuple[str, ...]) -> tuple[ResultColumn, ...]:
    """The columns a landmark step writes for ``landmarks``."""
    columns: list[ResultColumn] = []
    for name in landmarks:
        slug = _slug(name)
        columns.append(
            ResultColumn(f"{slug}_row_mm", "float", "mm", f"{name}: row position (down), mm")
        )
        columns.append(
            ResultColumn(f"{slug}_column_mm", "float", "mm", f"{name}: column position (right), mm")
        )
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise ValueError(f"landmarks {landmarks} give repeated column names; rename them")
    return tuple(columns)


def result_values(prediction: LandmarkPrediction, row: int) -> dict[str, Any]:
    """Image ``row`` of ``prediction`` as values of :func:`result_columns`."""
    values: dict[str, Any] = {}
    for k, name in enumerate(prediction.landmarks):
        slug = _slug(name)
        values[f"{slug}_row_mm"] = float(prediction.positions_mm[row, k, 0])
        values[f"{slug}_column_mm"] = float(prediction.positions_mm[row, k, 1])
    return values
