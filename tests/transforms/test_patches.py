"""Patch sampling: replayable per iteration, weighted towards small structures."""

from __future__ import annotations

import numpy as np
import torch

from kneescope.transforms.patches import PatchSampler, default_class_weights


def _volume() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((24, 48, 48), dtype=np.uint8)
    labels[:, :24] = 1  # large structure
    labels[10:12, 40:42, 40:42] = 2  # tiny structure in a corner
    image = labels.astype(np.float32) + np.random.default_rng(0).normal(0, 0.1, labels.shape)
    return image.astype(np.float32), labels


def test_same_iteration_same_patches_and_small_structures_are_found() -> None:
    image, labels = _volume()
    weights = default_class_weights([labels], 3)
    assert weights[2] > weights[1] > 0
    sampler = PatchSampler([image], [labels], (8, 8, 8), 3, weights, "3d", True, seed=4)
    a_img, a_lab = sampler.batch(7, 4)
    b_img, b_lab = sampler.batch(7, 4)
    torch.testing.assert_close(a_img, b_img)
    torch.testing.assert_close(a_lab, b_lab)
    assert a_img.shape == (4, 1, 8, 8, 8) and a_lab.dtype == torch.int64
    hits = sum(int((sampler.batch(it, 4)[1] == 2).any(dim=(1, 2, 3, 4)).sum()) for it in range(5))
    share = (labels == 2).mean()  # 0.0002: a uniform sampler would almost never see it
    assert hits / 20 > 0.25 > 100 * share


def test_2d_patches_drop_the_slice_axis() -> None:
    image, labels = _volume()
    sampler = PatchSampler([image], [labels], (1, 16, 16), 3, [0.2, 0.4, 0.4], "2d", True, 0)
    img, lab = sampler.batch(0, 5)
    assert img.shape == (5, 1, 16, 16) and lab.shape == (5, 1, 16, 16)


def test_2d_augmentation_rotates_within_the_slice() -> None:
    """Today's 2D augmentation (no domain randomisation) turns patches in-plane: a vertical
    bar comes out tilted in some patches (it used to tilt into the slice axis instead, which
    on a one-slice patch only squeezed it, never rotated it)."""
    labels = np.zeros((3, 48, 48), dtype=np.uint8)
    labels[:, 8:40, 22:26] = 1
    image = labels.astype(np.float32)
    sampler = PatchSampler([image], [labels], (1, 48, 48), 2, [0.5, 0.5], "2d", True, seed=1)
    tilted = 0
    for it in range(12):
        _, lab = sampler.batch(it, 4)
        for patch in lab[:, 0].numpy():
            rows = np.flatnonzero(patch.any(axis=1))
            first, last = patch[rows[2]], patch[rows[-3]]  # columns of the bar near its ends
            tilted += int(abs(np.flatnonzero(first).mean() - np.flatnonzero(last).mean()) > 1.5)
    assert tilted >= 3
