"""The loaders' result columns."""

from __future__ import annotations

from kneescope.cohort.result_schema import ResultColumn

CAPABILITY = "loaders"

LOAD_VOLUME_RESULTS: tuple[ResultColumn, ...] = (
    ResultColumn("image_shape", "str", "", "image size in voxels, e.g. 48x128x128"),
    ResultColumn(
        "image_spacing_mm", "str", "mm", "voxel spacing along each array axis, e.g. 0.7x0.36x0.36"
    ),
)
"""Columns of ``load_volume``."""

LOAD_LABELS_RESULTS: tuple[ResultColumn, ...] = (
    ResultColumn("labels_path", "str", "", "the label map file that was read"),
)
"""Columns of ``load_labels``."""
