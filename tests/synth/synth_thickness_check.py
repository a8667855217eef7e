"""An independent cartilage-thickness measurement on label maps (for checking synth truth).

Method: for every cartilage voxel on the plate's outer boundary (face-adjacent to a voxel
that is neither this cartilage nor its bone), the Euclidean distance (mm, anisotropic
spacing) from its centre to the nearest bone voxel centre; the plate's mean thickness is
the mean over those voxels. On a voxel grid this estimates the thickness along the bone
normal without bias (bone surface and outer surface each lie half a voxel from the last
voxel centres on average).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage


def measured_plate_thickness(
    labels: npt.NDArray[np.integer], cartilage: int, bone: int, spacing_mm: tuple[float, ...]
) -> float:
    """Mean thickness (mm) of the plate labelled ``cartilage`` over ``bone``."""
    cart = labels == cartilage
    boxes = ndimage.find_objects(cart.astype(np.uint8))
    if not boxes or boxes[0] is None:
        return 0.0
    box = tuple(
        slice(max(s.start - 12, 0), min(s.stop + 12, n))
        for s, n in zip(boxes[0], labels.shape, strict=True)
    )
    sub = labels[box]
    c = sub == cartilage
    b = sub == bone
    dist = ndimage.distance_transform_edt(~b, sampling=spacing_mm)
    other = ~(c | b)
    outer = c & ndimage.binary_dilation(other)
    return float(dist[outer].mean())
