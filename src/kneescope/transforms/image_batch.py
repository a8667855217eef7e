"""Per-image preprocessing of 2D image batches (classification and landmark networks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError
from kneescope.transforms.intensity import NormalisationConfig, intensity_stats


def normalise_images(
    images: npt.NDArray[Any], size_vox: tuple[int, int], normalisation: NormalisationConfig
) -> npt.NDArray[np.float32]:
    """Normalise each image by its own intensity statistics.

    Args:
        images: ``(N, rows, columns)`` or one ``(rows, columns)`` image, any real dtype.
        size_vox: the size every image must have (rows, columns).
        normalisation: the model's intensity normalisation.

    Returns:
        ``(N, 1, rows, columns)`` float32, ready for the network.

    Raises:
        InputError: wrong shape, or non-finite intensities.
    """
    array = np.asarray(images)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or tuple(array.shape[1:]) != tuple(size_vox):
        raise InputError(
            f"images must be {size_vox[0]} x {size_vox[1]} (rows x columns), found shape "
            f"{tuple(np.asarray(images).shape)}; resample them to the model's input size"
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"images must hold real numbers, found dtype {array.dtype}")
    out = np.empty((array.shape[0], 1, *size_vox), dtype=np.float32)
    for idx, image in enumerate(array):
        if not np.isfinite(image).all():
            raise InputError(f"image {idx} holds NaN or infinite values; fix or drop it")
        out[idx, 0] = intensity_stats(image, normalisation).apply_numpy(image)
    return out
