"""Quality-control flags for one knee's label map and measurements.

Flags (all in the result row, prefixed ``qc_``): a structure missing, extra connected
components (pieces of at least ``min_component_voxels`` besides the largest), implausible
volumes or thicknesses, and a side mismatch between the header/user and the anatomy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.biomarkers.measure_config import MeasureConfig
from kneescope.core.labels import KNEE_LABELS
from kneescope.types import Side


def component_count(mask: npt.NDArray[np.bool_], min_voxels: int) -> int:
    """Number of 26-connected components of at least ``min_voxels`` voxels."""
    if not mask.any():
        return 0
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return n
    sizes = np.bincount(lab.ravel())[1:]
    return int(np.count_nonzero(sizes >= min_voxels))


def qc_flags(
    counts: Mapping[int, int],
    components: Mapping[int, int],
    values: Mapping[str, float],
    declared_side: Side | None,
    side_from_anatomy: Side | None,
    unknown_labels: list[int],
    config: MeasureConfig,
) -> dict[str, bool | int]:
    """All QC flags of one knee; ``qc_ok`` is True when none is raised.

    Args:
        counts: label value -> voxel count.
        components: label value -> number of sizeable connected components.
        values: the biomarker values (volumes and thickness means are checked).
        declared_side: side from the header or the user (None if not given).
        side_from_anatomy: side from the anatomy (None if it could not be told).
        unknown_labels: label values present that kneescope's scheme does not define.
        config: plausibility ranges.
    """
    flags: dict[str, bool | int] = {}
    for value, name in KNEE_LABELS.labels.items():
        flags[f"qc_missing_{name}"] = counts.get(value, 0) == 0
        flags[f"qc_extra_components_{name}"] = max(0, components.get(value, 0) - 1)
    for name, rng in config.volume_ranges_mm3.items():
        vol = values.get(f"{name}_volume_mm3", float("nan"))
        flags[f"qc_implausible_volume_{name}"] = bool(
            np.isfinite(vol) and not rng.low <= vol <= rng.high
        )
    for plate in ("femoral", "medial_tibial", "lateral_tibial", "patellar"):
        mean = values.get(f"{plate}_cartilage_thickness_mean_mm", float("nan"))
        peak = values.get(f"{plate}_cartilage_thickness_max_mm", float("nan"))
        rng = config.thickness_mean_range_mm
        bad = (np.isfinite(mean) and not rng.low <= mean <= rng.high) or (
            np.isfinite(peak) and peak > config.thickness_max_mm
        )
        flags[f"qc_implausible_thickness_{plate}"] = bool(bad)
    flags["qc_side_mismatch"] = bool(
        declared_side is not None
        and side_from_anatomy is not None
        and declared_side != side_from_anatomy
    )
    flags["qc_side_unverified"] = side_from_anatomy is None
    flags["qc_unknown_labels"] = len(unknown_labels) > 0
    flags["qc_ok"] = not any(bool(v) for k, v in flags.items() if k != "qc_side_unverified")
    return flags
