"""Quality-control flags for one knee's label map and measurements.

Flags (all in the result row, prefixed ``qc_``): a structure missing, extra connected
components (pieces of at least ``min_component_voxels`` besides the largest), implausible
volumes or thicknesses, implausible anatomy (a cartilage plate that does not lie on its bone,
the femur not above the tibia), a side mismatch between the header/user and the anatomy, a
geometry the file does not state, a grid too coarse for meniscal extrusion, and the number of
biomarkers that could not be measured (NaN). ``qc_ok`` is computed last, from the finished
row (:func:`finish_qc`): it is True only when no flag is raised and every biomarker is a
number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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
    config: MeasureConfig,
) -> dict[str, bool | int]:
    """The QC flags of one knee that its label counts and values tell (not ``qc_ok``: that
    comes from :func:`finish_qc` once every flag is in).

    Args:
        counts: label value -> voxel count.
        components: label value -> number of sizeable connected components.
        values: the biomarker values (volumes and thickness means are checked).
        declared_side: side from the header or the user (None if not given).
        side_from_anatomy: side from the anatomy (None if it could not be told).
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
    return flags


INFORMATIVE_FLAGS = frozenset({"qc_side_unverified"})
"""Flags that inform without failing ``qc_ok`` (a side taken from the header or the user
without a patella to check it against)."""


def unmeasured(values: Mapping[str, float]) -> list[str]:
    """Names of the biomarkers that are not a finite number."""
    return [name for name, value in values.items() if not math.isfinite(value)]


def finish_qc(
    values: Mapping[str, float], flags: Mapping[str, bool | int]
) -> dict[str, bool | int]:
    """``flags`` completed from the finished row: ``qc_unmeasured_values`` (how many
    biomarkers are NaN) and ``qc_ok`` (no flag raised, except :data:`INFORMATIVE_FLAGS`, and
    no NaN). Any value that could not be measured therefore fails ``qc_ok``, whatever the
    reason, even one no specific flag names."""
    done = {k: v for k, v in flags.items() if k not in ("qc_ok", "qc_unmeasured_values")}
    done["qc_unmeasured_values"] = len(unmeasured(values))
    done["qc_ok"] = not any(bool(v) for k, v in done.items() if k not in INFORMATIVE_FLAGS)
    return done


def cartilage_contacts(
    arr: npt.NDArray[Any], box: tuple[slice, ...], cartilage: int, bones: Sequence[int]
) -> dict[int, int]:
    """Face contacts (6-neighbour voxel pairs) between a cartilage label and each bone label.

    Args:
        arr: (I, J, K) integer label map.
        box: the cartilage's bounding box (slices); searched one voxel beyond it.
        cartilage: the cartilage label value.
        bones: bone label values.

    Returns:
        bone label -> number of cartilage-bone voxel faces.
    """
    grown = tuple(
        slice(max(0, sl.start - 1), min(n, sl.stop + 1))
        for sl, n in zip(box, arr.shape, strict=True)
    )
    crop = arr[grown]
    cart = crop == cartilage
    contacts = dict.fromkeys(bones, 0)
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        a, b = crop[tuple(lo)], crop[tuple(hi)]
        ca, cb = cart[tuple(lo)], cart[tuple(hi)]
        for bone in bones:
            contacts[bone] += int(np.count_nonzero(ca & (b == bone)))
            contacts[bone] += int(np.count_nonzero(cb & (a == bone)))
    return contacts
