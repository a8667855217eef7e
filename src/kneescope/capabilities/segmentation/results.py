"""The ``segment`` step's result columns (the label map itself is an output file)."""

from __future__ import annotations

from kneescope.cohort.result_schema import ResultColumn

CAPABILITY = "segmentation"

SEGMENT_RESULTS: tuple[ResultColumn, ...] = (
    ResultColumn(
        "labels_present", "int", "1", "how many of the model's labels appear in the label map"
    ),
    ResultColumn("segment_device", "str", "", "device the network ran on (cpu, cuda:0, ...)"),
)
"""Columns of ``segment``."""
