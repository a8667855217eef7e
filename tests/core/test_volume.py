from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kneescope.core import Volume, lps_to_ras, orientation_code, ras_to_lps, spacing_from_affine
from kneescope.core.geometry import affine_from_axes, voxel_to_world, world_to_voxel
from kneescope.core.volume import check_voxel_count
from kneescope.errors import GeometryError, InputError, KneescopeError


def _rotation(angles: tuple[float, float, float]) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


angles = st.tuples(*[st.floats(-np.pi, np.pi, allow_nan=False)] * 3)
spacings = st.tuples(*[st.floats(0.1, 5.0, allow_nan=False)] * 3)


@given(angles, spacings)
@settings(max_examples=50, deadline=None)
def test_lps_ras_round_trip_and_spacing(rot: tuple[float, float, float], sp: tuple) -> None:
    affine = affine_from_axes([10.0, -20.0, 5.0], _rotation(rot), sp)
    assert np.allclose(ras_to_lps(lps_to_ras(affine)), affine)
    assert np.allclose(spacing_from_affine(lps_to_ras(affine)), sp)
    ijk = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert np.allclose(world_to_voxel(affine, voxel_to_world(affine, ijk)), ijk)


def test_orientation_codes() -> None:
    assert orientation_code(np.eye(4)) == "RAS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0, 1.0])) == "LPS"
    # sagittal DESS-like: i along x (L->R? +x is R), j towards posterior, k towards inferior
    sag = np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])
    assert orientation_code(sag) == "PIR"


def test_volume_keeps_label_dtype_and_mirrors() -> None:
    labels = np.zeros((3, 4, 5), dtype=np.uint8)
    v = Volume(labels, np.diag([0.7, 0.3646, 0.3646, 1.0]), {"side": "right"})
    assert v.is_label and v.array.dtype == np.uint8
    assert v.spacing_mm == pytest.approx((0.7, 0.3646, 0.3646))
    m = v.mirrored_lr()
    assert m.orientation[0] == "L" and v.orientation[0] == "R"
    assert m.array is v.array


def test_is_label_only_for_label_values_of_a_known_scheme() -> None:
    # an integer MR image is not a label map
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    image = rng.integers(0, 1200, size=(6, 7, 8)).astype(np.int16)
    assert not Volume(image, affine).is_label
    assert not Volume(image.astype(np.uint16), affine).is_label
    assert not Volume(np.full((2, 2, 2), -1, np.int32), affine).is_label
    assert not Volume(np.full((2, 2, 2), 10, np.uint8), affine).is_label  # beyond 0..9
    assert not Volume(image.astype(np.float32) % 10, affine).is_label
    assert Volume(rng.integers(0, 10, size=(6, 7, 8)).astype(np.int64), affine).is_label
    assert Volume(rng.integers(0, 5, size=(6, 7, 8)).astype(np.uint16), affine).is_label
    assert Volume(np.zeros((3, 3, 3), bool), affine).is_label


def test_volume_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        Volume(np.zeros((2, 2, 2, 2)), np.eye(4))
    with pytest.raises(GeometryError):
        Volume(np.zeros((2, 2, 2)), np.zeros((4, 4)))
    with pytest.raises(GeometryError):
        Volume(np.zeros((2, 2, 2)), np.full((4, 4), np.nan))
    with pytest.raises(InputError, match="voxels"):
        check_voxel_count((100_000, 100_000, 100_000), what="test")
    # every error is also a built-in and a KneescopeError
    assert issubclass(GeometryError, ValueError) and issubclass(GeometryError, KneescopeError)
