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


def test_medial_lateral_pairs_found_by_name() -> None:
    from kneescope.core import KNEE_LABELS
    from kneescope.inference.cleanup import medial_lateral_pairs

    assert medial_lateral_pairs(dict(KNEE_LABELS.labels)) == [(4, 5), (8, 9)]
    assert medial_lateral_pairs({1: "femur", 2: "medial_x", 3: "lateral_y"}) == []


def test_pieces_of_a_pair_take_the_label_of_their_side() -> None:
    from kneescope.inference.cleanup import split_medial_lateral

    labels = np.zeros((30, 12, 12), dtype=np.uint8)
    labels[4:26, 0:3] = 3  # tibia, centred at i = 14.5
    labels[3:9, 5:8, 2:6] = 5  # a "lateral" plate on the low side (wrong when medial is low)
    labels[20:26, 5:8, 2:6] = 4  # a "medial" plate on the high side (wrong)
    labels[6, 5, 7] = 4  # a stray medial-labelled piece on the low side
    labels[22:24, 9:11, 2:4] = 8  # meniscus pieces with mixed labels, high side
    labels[24, 9:11, 2:4] = 9
    out = split_medial_lateral(
        labels.copy(), [(4, 5), (8, 9)], axis=0, medial_low=True, reference=3
    )
    assert (out[3:9, 5:8, 2:6] == 4).all() and out[6, 5, 7] == 4
    assert (out[20:26, 5:8, 2:6] == 5).all()
    assert (out[22:25, 9:11, 2:4] == 9).all()
    assert (out[labels == 3] == 3).all() and (out[labels == 0] == 0).all()
    # medial high: the same map is already right except the stray piece and the meniscus
    again = split_medial_lateral(
        labels.copy(), [(4, 5), (8, 9)], axis=0, medial_low=False, reference=3
    )
    assert (again[3:9, 5:8, 2:6] == 5).all() and again[6, 5, 7] == 5
    assert (again[22:25, 9:11, 2:4] == 8).all()


def test_split_without_reference_changes_nothing() -> None:
    from kneescope.inference.cleanup import split_medial_lateral

    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 5
    out = split_medial_lateral(labels.copy(), [(4, 5)], axis=0, medial_low=True, reference=3)
    np.testing.assert_array_equal(out, labels)
