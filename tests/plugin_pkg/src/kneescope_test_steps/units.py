"""Test-only steps for items beyond one series and for cohort-level steps.

``test_item_fields`` (a ``kneescope.steps`` step) reports what an item holds and what the
catalog view says about it; ``test_visit_means`` (a ``kneescope.cohort_steps`` step) averages
a results column per visit and joins a clinical variable read through the catalog view;
``test_column_sum`` (a cohort step without the catalog) sums a column and can write a file
under a name it is given (to test the output-name checks).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from kneescope.cohort.cohort_steps import CohortContext, CohortStepResult
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import StepContext, StepResult


class _Base:
    """The optional parts of the step protocols (no model, no setup, no data passed on)."""

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "1"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    prefetchable: ClassVar[bool] = False

    def setup(self) -> None:
        return None


class ItemFields(_Base):
    """Values: the item's unit, its inputs, its visits, and catalog answers about it."""

    name = "test_item_fields"
    capability: ClassVar[str] = "test"
    results: ClassVar[tuple[ResultColumn, ...]] = (
        ResultColumn("unit", "str"),
        ResultColumn("n_inputs", "int", "1"),
        ResultColumn("inputs_exist", "bool"),
        ResultColumn("item_visits", "str"),
        ResultColumn("part_sequences", "str"),
        ResultColumn("catalog_visits", "str"),
        ResultColumn("klg", "float", "1"),
    )

    def run(self, item: Item, context: StepContext) -> StepResult:
        values: dict[str, Any] = {
            "unit": item.unit,
            "n_inputs": len(item.paths),
            "inputs_exist": all(Path(p).exists() for p in item.paths),
            "item_visits": ",".join(item.visits),
            "part_sequences": ",".join(p.sequence for p in item.parts),
        }
        if context.catalog is not None and item.subject:
            values["catalog_visits"] = ",".join(context.catalog.visits(item.subject))
            if item.visit and item.side:
                klg = context.catalog.clinical(item.subject, item.visit, item.side).get("XRKL")
                values["klg"] = float(klg) if isinstance(klg, float) else math.nan
        return StepResult(values=values)


class VisitMeans(_Base):
    """Mean of the ``column`` values per visit, and the mean of clinical ``variable`` over the
    same knees (read through the catalog view), written as values and as a CSV file."""

    name = "test_visit_means"

    def __init__(self, column: str = "klg", variable: str = "XRKL") -> None:
        self.column = column
        self.variable = variable

    def run(self, results: Any, context: CohortContext) -> CohortStepResult:
        means: dict[str, float] = {}
        clinical: dict[str, float] = {}
        if context.catalog is None:
            raise RuntimeError("test_visit_means needs a run with a catalog")
        for visit, group in results.groupby("visit"):
            means[str(visit)] = float(group[self.column].mean())
            knees = []
            for subject, side in zip(group["subject"], group["side"], strict=True):
                value = context.catalog.clinical(subject, str(visit), side).get(self.variable)
                knees.append(float(value) if isinstance(value, float) else math.nan)
            clinical[str(visit)] = sum(knees) / len(knees)
        lines = ["visit,mean,clinical_mean"]
        lines += [f"{v},{means[v]},{clinical[v]}" for v in sorted(means)]
        path = context.write_output("visit_means.csv", "\n".join(lines) + "\n")
        return CohortStepResult(
            values={
                "mean_by_visit": means,
                "clinical_mean_by_visit": clinical,
                "rows": len(results),
            },
            files={"visit_means": path},
        )


class ColumnSum(_Base):
    """Values: the sum of ``column`` and the row count; writes ``filename`` when given."""

    name = "test_column_sum"

    def __init__(self, column: str = "value", filename: str = "") -> None:
        self.column = column
        self.filename = filename

    def run(self, results: Any, context: CohortContext) -> CohortStepResult:
        total = float(results[self.column].sum()) if len(results) else 0.0
        files = {}
        if self.filename:
            files["sum"] = context.write_output(self.filename, f"{total}\n")
        return CohortStepResult(values={"sum": total, "rows": len(results)}, files=files)
