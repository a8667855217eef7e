"""Label-map clean-up: keep the largest connected component of each structure."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from scipy import ndimage


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
