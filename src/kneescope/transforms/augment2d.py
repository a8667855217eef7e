"""Random 2D augmentation of image batches (torch), seeded by a numpy generator.

Every image (each channel of each sample: a paired input's two images move independently) gets
its own rotation, zoom and shift (one bilinear resampling, zeros outside, i.e. the normalised
mean) and its own contrast and offset. The parameters come from ``rng``, so the same generator
state gives the same batch in any process.
"""

from __future__ import annotations

import numpy as np
import torch


def random_affine_2d(
    images: torch.Tensor,
    rng: np.random.Generator,
    *,
    rotation_deg: float,
    scale: float,
    translate: float,
) -> torch.Tensor:
    """``images`` ``(B, C, H, W)`` float32, each of the ``B * C`` images rotated (uniform in
    +-``rotation_deg``), zoomed (1 +- ``scale``) and shifted (+-``translate`` of the size)."""
    b, c, h, w = images.shape
    n = b * c
    angle = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, n))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale, n)
    shift = rng.uniform(-translate, translate, (n, 2)) * 2.0  # grid units span [-1, 1]
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = np.stack(
        [np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = torch.nn.functional.affine_grid(
        torch.from_numpy(theta.astype(np.float32)), [n, 1, h, w], align_corners=False
    )
    flat = images.reshape(n, 1, h, w)
    out = torch.nn.functional.grid_sample(
        flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.reshape(b, c, h, w)


def random_contrast(
    images: torch.Tensor, rng: np.random.Generator, *, amount: float
) -> torch.Tensor:
    """``images * a + o`` per image, ``a`` uniform in 1 +- amount, ``o`` in +-amount."""
    b, c = images.shape[:2]
    gain = torch.from_numpy(rng.uniform(1.0 - amount, 1.0 + amount, (b, c, 1, 1)).astype("f4"))
    offset = torch.from_numpy(rng.uniform(-amount, amount, (b, c, 1, 1)).astype("f4"))
    return images * gain + offset
