"""Largest-connected-component clean-up per structure."""

from __future__ import annotations

import numpy as np

from kneescope.inference.cleanup import keep_largest_components


def test_keeps_largest_component_of_each_label() -> None:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[2:8, 2:8, 2:8] = 1  # big femur
    labels[15:17, 15:17, 15:17] = 1  # stray femur island
    labels[10:12, 2:12, 2:4] = 2  # one cartilage piece
    labels[18, 18, 2] = 2  # stray voxel
    labels[12:14, 12:14, 12:14] = 3
    out = keep_largest_components(labels.copy())
    assert (out[15:17, 15:17, 15:17] == 0).all()
    assert out[18, 18, 2] == 0
    assert (out[2:8, 2:8, 2:8] == 1).all()
    assert (out[10:12, 2:12, 2:4] == 2).all()
    assert (out[12:14, 12:14, 12:14] == 3).all()
    assert int((out != labels).sum()) == 8 + 1


def test_diagonal_neighbours_are_connected() -> None:
    labels = np.zeros((5, 5, 5), dtype=np.uint8)
    labels[1, 1, 1] = labels[2, 2, 2] = labels[3, 3, 3] = 4
    out = keep_largest_components(labels.copy())
    np.testing.assert_array_equal(out, labels)
