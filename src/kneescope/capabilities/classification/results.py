"""The classification capability's result columns (one row per classified image or knee).

Column names carry a prefix (default ``class``) so that a pipeline may hold several
classifiers (e.g. ``klg`` for a KL grade): ``<prefix>_label``, ``<prefix>_index``,
``<prefix>_probability`` and one ``<prefix>_probability_<class>`` per class.
"""

from __future__ import annotations

import re
from typing import Any

from kneescope.capabilities.classification.predict import ClassPrediction
from kneescope.cohort.result_schema import ResultColumn

CAPABILITY = "classification"


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "class"


def result_columns(
    classes: tuple[str, ...] = (), prefix: str = "class"
) -> tuple[ResultColumn, ...]:
    """The columns a classification step writes; per-class probabilities when ``classes``.

    Raises:
        ValueError: two class names that give the same column name (``"KL 1"``, ``"kl-1"``).
    """
    columns = [
        ResultColumn(f"{prefix}_label", "str", "", "most probable class"),
        ResultColumn(f"{prefix}_index", "int", "1", "most probable class index (0-based)"),
        ResultColumn(f"{prefix}_probability", "float", "1", "probability of the chosen class"),
    ]
    columns += [
        ResultColumn(f"{prefix}_probability_{_slug(c)}", "float", "1", f"probability of {c}")
        for c in classes
    ]
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise ValueError(f"classes {classes} give repeated column names; rename them")
    return tuple(columns)


RESULTS: tuple[ResultColumn, ...] = result_columns()
"""The class-independent columns (prefix ``class``)."""


def result_values(prediction: ClassPrediction, row: int, prefix: str = "class") -> dict[str, Any]:
    """Image ``row`` of ``prediction`` as values of :func:`result_columns` (with classes)."""
    probabilities = prediction.probabilities[row]
    index = int(probabilities.argmax())
    values: dict[str, Any] = {
        f"{prefix}_label": prediction.classes[index],
        f"{prefix}_index": index,
        f"{prefix}_probability": float(probabilities[index]),
    }
    for name, p in zip(prediction.classes, probabilities, strict=True):
        values[f"{prefix}_probability_{_slug(name)}"] = float(p)
    return values
