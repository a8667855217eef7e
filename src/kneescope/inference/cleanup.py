"""Label-map clean-up: medial/lateral assignment by position, and the largest connected
component of each structure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.transforms.orientation import left_right_axis, medial_is_low


def clean_up_knee(
    labels: npt.NDArray[np.integer],
    *,
    names: Mapping[int, str],
    orientation: str,
    side: str | None,
    side_canonical: bool,
) -> npt.NDArray[np.integer]:
    """The segmenter's clean-up on the model grid: medial/lateral pieces by position (when
    the side is known), then the largest connected component of each structure.

    Args:
        labels: label map (I, J, K) on a grid with axis code ``orientation``; modified in
            place and returned.
        names: label value -> structure name (pairs ``medial_X``/``lateral_X``, and
            ``tibia`` as the reference, are found by name).
        orientation: axis code of the grid.
        side: the knee's side, or ``None``.
        side_canonical: the grid shows right-knee anatomy (left knees were mirrored).
    """
    axis = left_right_axis(orientation)
    reference = next((v for v, n in names.items() if n == "tibia"), None)
    pairs = medial_lateral_pairs(names)
    if side is not None and axis is not None and reference is not None and pairs:
        low = medial_is_low(orientation)
        if side == "left" and not side_canonical:
            low = not low
        split_medial_lateral(labels, pairs, axis=axis, medial_low=low, reference=reference)
    return keep_largest_components(labels)


def keep_largest_components(
    labels: npt.NDArray[np.integer], structures: Iterable[int] | None = None
) -> npt.NDArray[np.integer]:
    """Set to background every voxel of a structure outside its largest 26-connected component.

    Args:
        labels: label map (I, J, K), integer; modified in place and returned.
        structures: label values to clean (default: every non-zero value present).

    Returns:
        ``labels`` itself.
    """
    boxes = ndimage.find_objects(labels)
    wanted = set(structures) if structures is not None else None
    structure = np.ones((3,) * labels.ndim, dtype=bool)
    for index, box in enumerate(boxes):
        value = index + 1
        if box is None or (wanted is not None and value not in wanted):
            continue
        region = labels[box]
        mask = region == value
        components, count = ndimage.label(mask, structure=structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.reshape(-1))
        sizes[0] = 0
        largest = int(np.argmax(sizes))
        region[mask & (components != largest)] = 0
    return labels


def medial_lateral_pairs(labels: Mapping[int, str]) -> list[tuple[int, int]]:
    """``(medial, lateral)`` label values whose names differ only by the prefix, e.g.
    ``medial_meniscus``/``lateral_meniscus``."""
    by_name = {name: value for value, name in labels.items()}
    return [
        (value, by_name["lateral_" + name[len("medial_") :]])
        for value, name in sorted(labels.items())
        if name.startswith("medial_") and "lateral_" + name[len("medial_") :] in by_name
    ]


def split_medial_lateral(
    labels: npt.NDArray[np.integer],
    pairs: Sequence[tuple[int, int]],
    *,
    axis: int,
    medial_low: bool,
    reference: int,
) -> npt.NDArray[np.integer]:
    """Give each connected piece of a medial/lateral pair the label of the side it lies on.

    A network may label part of a medial structure lateral (or the whole of it: the two
    compartments look alike locally). Anatomy settles it: the medial menisci and tibial
    plateau lie on the medial side of the tibia's centre. Each 26-connected component of the
    union of a pair is relabelled by where its centroid lies along ``axis`` relative to the
    centroid of ``reference`` (the tibia).

    Args:
        labels: label map (I, J, K), integer; modified in place and returned.
        pairs: ``(medial, lateral)`` label values.
        axis: the array axis that runs left-right.
        medial_low: medial lies at lower indices along ``axis`` than lateral.
        reference: label whose centroid splits the two sides; with none present, nothing
            changes.

    Returns:
        ``labels`` itself.
    """
    others = tuple(a for a in range(labels.ndim) if a != axis)
    profile = np.count_nonzero(labels == reference, axis=others)  # voxels per index of axis
    if not pairs or profile.sum() == 0:
        return labels
    plane = float(np.dot(profile, np.arange(profile.size)) / profile.sum())
    structure = np.ones((3, 3, 3), dtype=bool)
    for medial, lateral in pairs:
        box = _box_of(np.isin(labels, (medial, lateral)))
        if box is None:
            continue
        region = labels[box]
        union = (region == medial) | (region == lateral)
        components, count = ndimage.label(union, structure=structure)
        where = np.nonzero(union)
        pieces = components[where]
        sizes = np.bincount(pieces, minlength=count + 1)[1:]
        sums = np.bincount(pieces, weights=where[axis], minlength=count + 1)[1:]
        centres = sums / np.maximum(sizes, 1) + box[axis].start
        is_medial = (centres < plane) == medial_low
        lut = np.zeros(count + 1, dtype=labels.dtype)
        lut[1:] = np.where(is_medial, medial, lateral)
        region[where] = lut[pieces]
    return labels


def _box_of(mask: npt.NDArray[np.bool_]) -> tuple[slice, ...] | None:
    """The bounding box of a 3D mask, or ``None`` when it is empty."""
    box = []
    for axis in range(mask.ndim):
        hit = np.nonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)
