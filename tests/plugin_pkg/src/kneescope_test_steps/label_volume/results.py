"""The columns ``label_volume`` puts in the results table, with their units."""

from __future__ import annotations

from kneescope.cohort.result_schema import ResultColumn

CAPABILITY = "label_volume"

RESULTS: tuple[ResultColumn, ...] = (
    ResultColumn("label_voxels", "int", "1", "voxels holding the label"),
    ResultColumn("label_volume_mm3", "float", "mm3", "volume of the label"),
)
