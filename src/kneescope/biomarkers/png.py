"""A minimal PNG writer (8-bit RGB, zlib) and a perceptual colour map, numpy only."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError
from kneescope.io.atomic import atomic_write_bytes

# viridis-like anchors (dark blue -> teal -> green -> yellow), sRGB 0..1
_ANCHORS = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.283, 0.141, 0.458],
        [0.254, 0.265, 0.530],
        [0.207, 0.372, 0.553],
        [0.164, 0.471, 0.558],
        [0.128, 0.567, 0.551],
        [0.135, 0.659, 0.518],
        [0.267, 0.749, 0.441],
        [0.478, 0.821, 0.318],
        [0.741, 0.873, 0.150],
        [0.993, 0.906, 0.144],
    ]
)


def colourise(
    values: npt.NDArray[np.floating], vmin: float, vmax: float, nan_rgb: tuple[int, int, int]
) -> npt.NDArray[np.uint8]:
    """Map a 2D float array to uint8 RGB (H, W, 3); NaN pixels get ``nan_rgb``."""
    t = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / max(vmax - vmin, 1e-9), 0.0, 1.0)
    pos = t * (len(_ANCHORS) - 1)
    lo = np.floor(pos).astype(np.int64).clip(0, len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _ANCHORS[lo] * (1.0 - frac) + _ANCHORS[lo + 1] * frac
    out = np.round(rgb * 255.0).astype(np.uint8)
    out[np.isnan(values)] = nan_rgb
    return out


def write_png(path: Path, rgb: npt.NDArray[np.uint8]) -> None:
    """Write an (H, W, 3) uint8 array as an 8-bit RGB PNG."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"a PNG needs a uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6))
    png += chunk(b"IEND", b"")
    atomic_write_bytes(path, png)
