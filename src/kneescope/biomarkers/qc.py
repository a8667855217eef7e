"""Quality-control flags for one knee's label map and measurements.

Flags (all in the result row, prefixed ``qc_``): a structure missing, extra connected
components (pieces of at least ``min_component_voxels`` besides the largest), implausible
volumes or thicknesses, implausible anatomy (a cartilage plate that does not lie on its bone,
the femur not above the tibia), a side mismatch between the header/user and the anatomy, a
geometry the file does not state, a grid too coarse for meniscal extrusion, a structure the
label scheme does not label (``qc_not_labelled_<structure>``, informative, see
:mod:`kneescope.biomarkers.label_schemes`), a combined tibial cartilage split without a clear
gap, and the number of biomarkers that could not be measured (NaN). ``qc_ok`` is computed
last, from the finished row (:func:`finish_qc`): it is True only when no flag is raised
(informative ones aside) and every biomarker of a labelled structure is a number.
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
    # set by kneescope.biomarkers.label_schemes for a scheme that lacks the structure
    for name in KNEE_LABELS.labels.values():
        flags[f"{NOT_LABELLED_PREFIX}{name}"] = False
    flags["qc_tibial_split_unclear"] = False
    return flags


NOT_LABELLED_PREFIX = "qc_not_labelled_"
"""``qc_not_labelled_<structure>``: the label scheme (or, for an optional structure, the
file) has no label for the structure, so its values are NaN by design. Informative: it does
not fail ``qc_ok``, and the NaN values it explains are not counted as unmeasured."""

INFORMATIVE_FLAGS = frozenset({"qc_side_unverified"})
"""Flags that inform without failing ``qc_ok`` (a side taken from the header or the user
without a patella to check it against), besides every ``qc_not_labelled_...`` flag."""


def _informative(flag: str) -> bool:
    return flag in INFORMATIVE_FLAGS or flag.startswith(NOT_LABELLED_PREFIX)


_BONE_OF = {
    "femoral_cartilage": "femur",
    "medial_tibial_cartilage": "tibia",
    "lateral_tibial_cartilage": "tibia",
    "patellar_cartilage": "patella",
}


def _plate_structures(plate: str) -> frozenset[str]:
    cartilage = f"{plate}_cartilage"
    return frozenset({cartilage, _BONE_OF[cartilage]})


def value_structures(name: str) -> frozenset[str]:
    """The labelled structures (kneescope names) a biomarker column is measured from; empty
    for a name this does not know.

    ``<bone>_bone_...`` (femur, tibia, patella): that bone;
    ``femoral_...``, ``medial_tibial_...``, ``lateral_tibial_...``, ``patellar_...``: the
    plate's cartilage and bone; ``<m>_meniscus_...``: that meniscus; ``<m>_tibial_coverage_pct``:
    the meniscus and its tibial plate; ``we2008_<REGION>_...``: the plate(s) of the
    Wirth-Eckstein region (``P`` patella, ``..MF``/``..LF`` femur, ``..MT``/``..LT`` tibia,
    ``..FTC`` femur and tibia of that compartment).
    """
    if name.startswith("we2008_"):
        region = name.split("_")[1]
        if region == "P":
            return _plate_structures("patellar")
        out: set[str] = set()
        for compartment, plate in (("M", "medial_tibial"), ("L", "lateral_tibial")):
            if region.endswith(f"{compartment}FTC"):
                out |= _plate_structures("femoral") | _plate_structures(plate)
            elif region.endswith(f"{compartment}F"):
                out |= _plate_structures("femoral")
            elif region.endswith(f"{compartment}T"):
                out |= _plate_structures(plate)
        return frozenset(out)
    for bone in ("femur", "tibia", "patella"):
        if name.startswith(f"{bone}_bone_"):
            return frozenset({bone})
    for side in ("medial", "lateral"):
        if name.startswith(f"{side}_meniscus_"):
            return frozenset({f"{side}_meniscus"})
        if name == f"{side}_tibial_coverage_pct":
            return frozenset({f"{side}_meniscus"}) | _plate_structures(f"{side}_tibial")
    for plate in ("femoral", "medial_tibial", "lateral_tibial", "patellar"):
        if name.startswith(f"{plate}_"):
            return _plate_structures(plate)
    return frozenset()


def flag_structure(flag: str) -> str | None:
    """The structure (kneescope name) a per-structure QC flag judges, or None."""
    for prefix in ("qc_missing_", "qc_extra_components_", "qc_implausible_volume_"):
        if flag.startswith(prefix):
            return flag[len(prefix) :]
    for prefix in ("qc_implausible_thickness_", "qc_cartilage_off_bone_"):
        if flag.startswith(prefix):
            return f"{flag[len(prefix) :]}_cartilage"
    return None


def not_labelled(flags: Mapping[str, bool | int]) -> frozenset[str]:
    """Structures whose ``qc_not_labelled_...`` flag is raised."""
    n = len(NOT_LABELLED_PREFIX)
    return frozenset(k[n:] for k, v in flags.items() if k.startswith(NOT_LABELLED_PREFIX) and v)


def unmeasured(
    values: Mapping[str, float], flags: Mapping[str, bool | int] | None = None
) -> list[str]:
    """Names of the biomarkers that are not a finite number, except those of structures a
    raised ``qc_not_labelled_...`` flag in ``flags`` names (see :func:`value_structures`)."""
    absent = not_labelled(flags or {})
    return [
        name
        for name, value in values.items()
        if not math.isfinite(value) and not (absent and value_structures(name) & absent)
    ]


def finish_qc(
    values: Mapping[str, float], flags: Mapping[str, bool | int]
) -> dict[str, bool | int]:
    """``flags`` completed from the finished row: ``qc_unmeasured_values`` (how many
    biomarkers are NaN without a ``qc_not_labelled_...`` flag that explains them) and
    ``qc_ok`` (no flag raised, except :data:`INFORMATIVE_FLAGS` and ``qc_not_labelled_...``,
    and no such NaN). Any value that could not be measured therefore fails ``qc_ok``,
    whatever the reason, even one no specific flag names; a value of a structure the label
    scheme does not label is NaN with its flag and does not."""
    done = {k: v for k, v in flags.items() if k not in ("qc_ok", "qc_unmeasured_values")}
    done["qc_unmeasured_values"] = len(unmeasured(values, done))
    done["qc_ok"] = not any(bool(v) for k, v in done.items() if not _informative(k))
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
