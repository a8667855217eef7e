"""Label-map clean-up: medial/lateral assignment by position, and the largest connected
component of each structure.

Connected components come from ``cc3d`` (connected-components-3d) in one multi-label pass
over the whole map: every structure's 26-connected pieces at once, with their voxel counts
and bounding boxes from one more pass (``cc3d.statistics``). On a full-size 160x384x384 knee
this is ~10x faster than one ``scipy.ndimage.label`` per structure, with a third of the
working memory (one uint32 component map), and gives the same map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import cc3d
import numpy as np
import numpy.typing as npt

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

    Among equally large components the first in raster (C) order is kept.

    Args:
        labels: label map (I, J, K), integer (values below 2**32); modified in place and
            returned.
        structures: label values to clean (default: every non-zero value present).

    Returns:
        ``labels`` itself.
    """
    if labels.ndim != 3:
        raise ValueError(f"keep_largest_components needs a 3D label map, got {labels.shape}")
    components = cc3d.connected_components(labels, connectivity=26)
    stats = cc3d.statistics(components)
    counts = stats["voxel_counts"]
    boxes = stats["bounding_boxes"]
    wanted = set(structures) if structures is not None else None
    largest: dict[int, int] = {}  # label value -> its largest component
    owner: dict[int, int] = {}  # component -> label value
    for c in range(1, len(counts)):
        if counts[c] == 0 or boxes[c] is None:
            continue
        value = _value_of(labels, components, boxes[c], c)
        if wanted is not None and value not in wanted:
            continue
        owner[c] = value
        if value not in largest or counts[c] > counts[largest[value]]:
            largest[value] = c  # components are numbered in raster order: ties keep the first
    for c, value in owner.items():
        if largest[value] != c:
            box = boxes[c]
            labels[box][components[box] == c] = 0
    return labels


def _value_of(
    labels: npt.NDArray[np.integer],
    components: npt.NDArray[np.integer],
    box: tuple[slice, ...],
    component: int,
) -> int:
    """The label value of ``component``: read at one of its voxels, found on the first plane
    of its bounding box (which it must touch)."""
    plane = components[box[0].start, box[1], box[2]]
    pos = int(np.argmax(plane == component))
    j, k = divmod(pos, plane.shape[1])
    return int(labels[box[0].start, box[1].start + j, box[2].start + k])


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
    """Give each connected piece of a medial/lateral structure the label of the side it lies on.

    A network may label part of a medial structure lateral (or the whole of it: the two
    compartments look alike locally). Anatomy settles it: the medial menisci and tibial
    plateau lie on the medial side of the tibia's centre. Each 26-connected piece of each
    label of a pair (pieces of the medial label and of the lateral label taken separately,
    from the map as given) is relabelled by where its centroid lies along ``axis`` relative
    to the centroid of ``reference`` (the tibia).

    Pieces are taken per label, not over the union of the pair: the two menisci often touch
    (at the horns, or through a few voxels in the intercondylar notch), and one piece of the
    union would then give both the same label (on held-out knees the lateral meniscus lost
    all its voxels that way; docs/inference.md).

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
    for medial, lateral in pairs:
        box = _box_of(np.isin(labels, (medial, lateral)))
        if box is None:
            continue
        region = labels[box]
        union = (region == medial) | (region == lateral)
        pair_map = np.where(union, region, 0)
        components = cc3d.connected_components(pair_map, connectivity=26)  # per label
        centres = cc3d.statistics(components)["centroids"][1:, axis] + box[axis].start
        is_medial = (centres < plane) == medial_low
        lut = np.zeros(centres.size + 1, dtype=labels.dtype)
        lut[1:] = np.where(is_medial, medial, lateral)
        region[union] = lut[components[union]]
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
