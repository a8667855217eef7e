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
"""kneescope's own label map (../shared/design/domain.md)."""

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
