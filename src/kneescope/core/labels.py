"""Segmentation label definitions and remapping between label schemes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from kneescope.config import FROZEN
from kneescope.errors import InputError


class LabelScheme(BaseModel):
    """A named set of integer labels; 0 is always background.

    Attributes:
        name: scheme name, e.g. ``"kneescope"`` or ``"oai-zib"``.
        labels: label value -> structure name (without background).
    """

    model_config = FROZEN

    name: str
    labels: dict[int, str]

    def value_of(self, structure: str) -> int:
        for value, label in self.labels.items():
            if label == structure:
                return value
        raise InputError(f"label scheme {self.name!r} has no structure {structure!r}")


KNEE_LABELS = LabelScheme(
    name="kneescope",
    labels={
        1: "femur",
        2: "femoral_cartilage",
        3: "tibia",
        4: "medial_tibial_cartilage",
        5: "lateral_tibial_cartilage",
        6: "patella",
        7: "patellar_cartilage",
        8: "medial_meniscus",
        9: "lateral_meniscus",
    },
)
"""kneescope's own label map: bones, their cartilage plates (tibial split medial/lateral) and
the two menisci (docs/biomarkers.md uses them by name)."""

OAI_ZIB_LABELS = LabelScheme(
    name="oai-zib",
    labels={1: "femur", 2: "femoral_cartilage", 3: "tibia", 4: "tibial_cartilage"},
)
"""The OAI-ZIB scheme (507 DESS cases): tibial cartilage not split by compartment."""

KNEESCOPE_TO_OAI_ZIB: Mapping[int, int] = MappingProxyType(
    {1: 1, 2: 2, 3: 3, 4: 4, 5: 4, 6: 0, 7: 0, 8: 0, 9: 0}
)
"""Collapse kneescope labels onto OAI-ZIB's four (patella and menisci become background)."""

CARTILAGE_PLATES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "femoral": (2, 1),
        "medial_tibial": (4, 3),
        "lateral_tibial": (5, 3),
        "patellar": (7, 6),
    }
)
"""Cartilage plate name -> (cartilage label, underlying bone label) in :data:`KNEE_LABELS`."""


def remap_labels(
    labels: npt.NDArray[np.integer], mapping: Mapping[int, int], *, strict: bool = True
) -> npt.NDArray[np.uint8]:
    """Map label values through ``mapping`` (value -> new value) with a lookup table.

    Args:
        labels: integer label map of any shape.
        mapping: old value -> new value; 0 maps to 0 unless given.
        strict: raise if ``labels`` holds a value that ``mapping`` does not name.

    Returns:
        uint8 array of the same shape.
    """
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"label maps must be integer, got dtype {labels.dtype}")
    present = np.unique(labels)
    if present.size and (present.min() < 0 or present.max() > 65535):
        lo, hi = present.min(), present.max()
        raise InputError(f"label values must lie in 0..65535, found {lo}..{hi}")
    lut = np.zeros(int(present.max(initial=0)) + 1, dtype=np.uint8)
    for old, new in mapping.items():
        if 0 <= old < lut.size:
            lut[old] = new
    if strict:
        unknown = sorted(int(v) for v in present if v != 0 and int(v) not in mapping)
        if unknown:
            raise InputError(f"label values {unknown} are not in the remapping table")
    return lut[labels]


STRUCTURE_COLOURS_RGB: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "femur": (241, 214, 145),
        "tibia": (204, 163, 102),
        "patella": (250, 234, 190),
        "femoral_cartilage": (111, 184, 210),
        "medial_tibial_cartilage": (64, 120, 230),
        "lateral_tibial_cartilage": (150, 98, 224),
        "tibial_cartilage": (90, 140, 228),
        "patellar_cartilage": (72, 196, 160),
        "medial_meniscus": (222, 60, 60),
        "lateral_meniscus": (244, 150, 40),
    }
)
"""Fixed display colours (R, G, B in 0..255) of knee structures for viewers' colour tables.

Bones in the bone hue of 3D Slicer's generic anatomy colours (femur exactly its "bone"),
cartilage in its cartilage blue family, menisci in warm red/orange: every structure is told
apart at a glance and each keeps its colour in every file kneescope writes.
"""

_FALLBACK_RGB: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)


def label_colour(value: int, name: str) -> tuple[int, int, int]:
    """The display colour (R, G, B in 0..255) of label ``value`` named ``name``.

    Known knee structures get :data:`STRUCTURE_COLOURS_RGB`; any other name a fixed colour of
    a distinct palette chosen by ``value`` (the same every time).
    """
    known = STRUCTURE_COLOURS_RGB.get(name)
    if known is not None:
        return known
    return _FALLBACK_RGB[value % len(_FALLBACK_RGB)]
