"""The ``xray_jsw`` step: joint space width and JSN grade of one knee of a knee film.

Pipeline: ``load -> locate_knee -> [kl_grade ->] xray_jsw``. It reads data ``knee_roi``, the
standard knee ROI (700 x 700 float32 at 0.2 mm, right frame; :mod:`kneescope.xray.roi`) that
``locate_knee`` writes (None when no knee could be cut out), and measures it with
:func:`kneescope.xray.jsw.measure_jsw`; the JSN grade per compartment comes from the mJSW by
the thresholds of :data:`kneescope.xray.jsn.JSN_THRESHOLDS_MM`. A knee that cannot be
measured gets empty values and its reason in ``jsw_reason``, never a made-up number.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, Scalar, StepContext, StepResult
from kneescope.errors import InputError
from kneescope.xray.jsn import JSN_THRESHOLDS_MM, jsn_grade
from kneescope.xray.jsw import FIXED_FRACTIONS, ROI_SIZE, ROI_SPACING_MM, JswResult, measure_jsw

CAPABILITY = "radiographs"

COMPARTMENTS = ("medial", "lateral")


def fixed_column(compartment: str, fraction: float) -> str:
    """Column name of the JSW at a fixed location, e.g. ``jsw_medial_x0225_mm``."""
    return f"jsw_{compartment}_x{round(fraction * 1000):04d}_mm"


def _columns() -> tuple[ResultColumn, ...]:
    columns: list[ResultColumn] = []
    for comp in COMPARTMENTS:
        columns.append(
            ResultColumn(
                f"mjsw_{comp}_mm",
                "float",
                "mm",
                f"minimum joint space width of the {comp} compartment (central 60 %)",
            )
        )
    for comp in COMPARTMENTS:
        columns.append(
            ResultColumn(f"jsn_{comp}", "int", "1", f"OARSI JSN grade 0..3 of the {comp} side")
        )
    for comp in COMPARTMENTS:
        for f in FIXED_FRACTIONS:
            columns.append(
                ResultColumn(
                    fixed_column(comp, f),
                    "float",
                    "mm",
                    f"joint space width at {f:.3f} of the tibial width from the {comp} margin",
                )
            )
    columns += [
        ResultColumn("tibial_width_mm", "float", "mm", "distance between the tibial margins"),
        ResultColumn(
            "plateau_angle_deg", "float", "deg", "tilt of the tibial plateau line in the ROI"
        ),
        ResultColumn("jsw_reason", "str", "", "why the knee was not measured (empty: it was)"),
    ]
    return tuple(columns)


JSW_RESULTS: tuple[ResultColumn, ...] = _columns()
"""Columns of ``xray_jsw``."""


def _empty(reason: str) -> dict[str, Scalar]:
    values: dict[str, Scalar] = {c.name: None for c in JSW_RESULTS}
    values["jsw_reason"] = reason
    return values


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def jsw_values(roi: Any) -> dict[str, Scalar]:
    """The step's columns for one standard knee ROI (an array, or None when there is none).

    Raises:
        InputError: the ROI is not a 700 x 700 array.
    """
    if roi is None:
        return _empty("no knee ROI (the knee was not located)")
    arr = np.asarray(getattr(roi, "array", roi))
    if arr.shape != (ROI_SIZE, ROI_SIZE):
        raise InputError(
            f"knee_roi has shape {arr.shape}, not {ROI_SIZE} x {ROI_SIZE}; run locate_knee "
            "before xray_jsw (it writes the standard 0.2 mm knee ROI)"
        )
    return result_values(measure_jsw(arr, ROI_SPACING_MM))


def result_values(result: JswResult) -> dict[str, Scalar]:
    """The step's columns from a :class:`~kneescope.xray.jsw.JswResult` (measure once, use
    both the columns and the result's JSW profile)."""
    if result.reason is not None:
        return _empty(result.reason)
    values: dict[str, Scalar] = {}
    for comp in COMPARTMENTS:
        mjsw = result.mjsw_medial_mm if comp == "medial" else result.mjsw_lateral_mm
        values[f"mjsw_{comp}_mm"] = _finite(mjsw)
        values[f"jsn_{comp}"] = jsn_grade(mjsw, JSN_THRESHOLDS_MM.for_compartment(comp))
        fixed = result.jsw_fixed_medial_mm if comp == "medial" else result.jsw_fixed_lateral_mm
        for f, v in zip(FIXED_FRACTIONS, fixed, strict=True):
            values[fixed_column(comp, f)] = _finite(v)
    values["tibial_width_mm"] = _finite(result.tibial_width_mm)
    values["plateau_angle_deg"] = _finite(result.plateau_angle_deg)
    values["jsw_reason"] = ""
    return values


class XrayJsw(BaseStep):
    """Joint space width (mJSW and fixed locations per compartment) and JSN grade of the knee
    in ``knee_roi``."""

    name = "xray_jsw"
    version = "1"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = JSW_RESULTS
    reads: ClassVar[tuple[str, ...]] = ("knee_roi",)

    def run(self, item: Item, context: StepContext) -> StepResult:
        del item
        with context.phase("measure"):
            values = jsw_values(context.data.get("knee_roi"))
        return StepResult(values=values)


__all__ = [
    "CAPABILITY",
    "JSW_RESULTS",
    "XrayJsw",
    "fixed_column",
    "jsw_values",
    "result_values",
]
