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


def _scipy_keep_largest(labels: np.ndarray) -> np.ndarray:
    """The clean-up before cc3d: one scipy label per structure inside its bounding box."""
    from scipy import ndimage

    structure = np.ones((3, 3, 3), dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        region = labels[box]
        mask = region == index + 1
        components, count = ndimage.label(mask, structure=structure)
        if count > 1:
            sizes = np.bincount(components.reshape(-1))
            sizes[0] = 0
            region[mask & (components != int(np.argmax(sizes)))] = 0
    return labels


def _scipy_split(labels: np.ndarray, pairs: list[tuple[int, int]], axis: int) -> np.ndarray:
    """The medial/lateral split with scipy: each label's own pieces, by centroid."""
    from scipy import ndimage

    others = tuple(a for a in range(3) if a != axis)
    profile = np.count_nonzero(labels == 3, axis=others)
    plane = float(np.dot(profile, np.arange(profile.size)) / profile.sum())
    given = labels.copy()
    for medial, lateral in pairs:
        for value in (medial, lateral):
            pieces, count = ndimage.label(given == value, structure=np.ones((3, 3, 3), bool))
            if count == 0:
                continue
            centres = ndimage.center_of_mass(pieces > 0, pieces, range(1, count + 1))
            lut = np.array([0] + [medial if c[axis] < plane else lateral for c in centres])
            labels[pieces > 0] = lut[pieces[pieces > 0]]
    return labels


def test_touching_menisci_keep_their_sides() -> None:
    """Two menisci joined by a few voxels are two pieces (one per label), not one piece of
    the pair: each keeps the label of its side (before, both became medial)."""
    from kneescope.inference.cleanup import split_medial_lateral

    labels = np.zeros((30, 12, 12), dtype=np.uint8)
    labels[4:26, 0:3] = 3  # tibia, centred at i = 14.5
    labels[3:12, 5:8, 2:6] = 8  # medial meniscus, low side
    labels[18:28, 5:8, 2:6] = 9  # lateral meniscus, high side, larger
    labels[12:18, 6, 3] = 8  # a thin bridge of medial-labelled voxels joins them
    labels[20:22, 6, 3] = 8  # a medial-labelled part of the lateral meniscus
    out = split_medial_lateral(labels.copy(), [(8, 9)], axis=0, medial_low=True, reference=3)
    assert (out[3:12, 5:8, 2:6] == 8).all() and (out[12:18, 6, 3] == 8).all()
    assert (out[18:28, 5:8, 2:6] == 9).all()  # the stray medial part too
    assert (out[labels == 3] == 3).all()


def _noisy_knee_labels() -> np.ndarray:
    """A rendered knee's true label map (small grid) with 80 stray fragments of random
    structures (also touching the real structures), two of them equally large and disjoint
    pieces of one label that is absent otherwise (a tie)."""
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import SizeSpec, sample_knee_params

    tiny = SizeSpec(name="tiny", shape=(32, 96, 96), spacing_mm=(3.5, 140.0 / 96, 140.0 / 96))
    sample = render_knee(sample_knee_params(np.random.default_rng(510100), side="right"), tiny)
    labels = np.ascontiguousarray(sample.labels.array, dtype=np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(80):
        i, j, k = (int(rng.integers(0, n - 3)) for n in labels.shape)
        labels[i : i + 2, j : j + 3, k : k + 2] = rng.integers(1, 10)
    labels[labels == 7] = 0
    labels[0:2, 0:2, 0:2] = 7
    labels[-2:, -2:, -2:] = 7
    return labels


def test_one_pass_components_equal_per_structure_scipy_on_a_knee() -> None:
    """cc3d's one multi-label pass gives the scipy-per-structure map on a real knee's labels
    with stray fragments and a tie (the first piece in raster order is kept), and the
    medial/lateral split equals the scipy version too."""
    from kneescope.inference.cleanup import split_medial_lateral

    labels = _noisy_knee_labels()
    expected = _scipy_keep_largest(labels.copy())
    got = keep_largest_components(labels.copy())
    np.testing.assert_array_equal(got, expected)
    assert (got[0:2, 0:2, 0:2] == 7).all() and (got[-2:, -2:, -2:] == 0).all()
    assert int((got != labels).sum()) > 100  # the fragments really were removed
    for axis in range(3):
        pairs = [(4, 5), (8, 9)]
        want = _scipy_split(labels.copy(), pairs, axis)
        have = split_medial_lateral(labels.copy(), pairs, axis=axis, medial_low=True, reference=3)
        np.testing.assert_array_equal(have, want)
    only = keep_largest_components(labels.copy(), structures=[1])
    np.testing.assert_array_equal(only[labels != 1], labels[labels != 1])
