"""Read 8/16-bit greyscale raster images (PNG, JPEG) such as published knee radiograph crops.

Pillow reads the file (it comes with scikit-image's image I/O). Colour images are converted to
greyscale (ITU-R 601 luma); the array is ``(rows, columns)``, uint8 or uint16, as displayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError
from kneescope.io.guards import require_regular_file

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File suffixes read by :func:`read_raster_image` (case-insensitive)."""


def is_raster_image(path: Path) -> bool:
    """True when ``path``'s suffix is one of :data:`RASTER_SUFFIXES`."""
    return path.suffix.lower() in RASTER_SUFFIXES


def read_raster_image(path: Path) -> npt.NDArray[Any]:
    """The greyscale pixels of a PNG or JPEG file, ``(rows, columns)`` uint8 or uint16.

    Raises:
        InputError: missing, not a regular file, not a readable PNG/JPEG, or empty.
    """
    from PIL import Image, UnidentifiedImageError

    require_regular_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.int64)
                pixels: npt.NDArray[Any] = np.clip(array, 0, 65535).astype(np.uint16)
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise InputError(
            f"{path}: not a readable PNG or JPEG image ({exc}); give a PNG, JPEG or DICOM file"
        ) from None
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise InputError(f"{path}: the image has no pixels; give a non-empty image")
    return pixels
