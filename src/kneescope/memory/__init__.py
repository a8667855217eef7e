"""Memory and FLOP prediction for networks, and the planner that fits a budget.

Public API: :class:`StepConfig` (what a step does), :func:`predict_step` ->
:class:`MemoryEstimate` (peak bytes, breakdown, FLOPs; nothing allocated),
:func:`measure_cpu` -> :class:`Measurement` (a real step in a fresh process),
:func:`plan_training` -> :class:`Plan` (ranked configurations within a budget),
:func:`parse_budget` ("11GB", "host"). See docs/memory.md.
"""

from kneescope.memory.budget import format_bytes, host_available_bytes, parse_budget
from kneescope.memory.measure import Measurement, measure_cpu
from kneescope.memory.planner import Plan, PlanCandidate, patch_ladder, plan_training
from kneescope.memory.predict import (
    MARGIN_FRACTION,
    MARGIN_RESERVE_BYTES,
    MemoryEstimate,
    margin_for,
    predict_step,
)
from kneescope.memory.step import StepConfig
from kneescope.memory.tracker import CATEGORIES, AllocationTracker

__all__ = [
    "CATEGORIES",
    "MARGIN_FRACTION",
    "MARGIN_RESERVE_BYTES",
    "AllocationTracker",
    "Measurement",
    "MemoryEstimate",
    "Plan",
    "PlanCandidate",
    "StepConfig",
    "format_bytes",
    "host_available_bytes",
    "margin_for",
    "measure_cpu",
    "parse_budget",
    "patch_ladder",
    "plan_training",
    "predict_step",
]
