"""Core domain objects: :class:`Volume`, geometry helpers and label definitions (numpy only)."""

from kneescope.core.geometry import (
    affine_from_axes,
    flip_lr_affine,
    lps_to_ras,
    orientation_code,
    ras_to_lps,
    spacing_from_affine,
)
from kneescope.core.labels import KNEE_LABELS, LabelScheme
from kneescope.core.volume import Volume

__all__ = [
    "KNEE_LABELS",
    "LabelScheme",
    "Volume",
    "affine_from_axes",
    "flip_lr_affine",
    "lps_to_ras",
    "orientation_code",
    "ras_to_lps",
    "spacing_from_affine",
]
