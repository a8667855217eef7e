"""Resampling keeps the field of view; labels stay integer and round-trip by nearest neighbour."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kneescope.core import affine_from_axes
from kneescope.core.geometry import voxel_to_world
from kneescope.transforms.resample import plan_resampling


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(*[st.integers(4, 30)] * 3),
    factor=st.tuples(*[st.sampled_from([0.5, 1.0, 2.0, 3.0])] * 3),
)
def test_field_of_view_is_kept(
    shape: tuple[int, int, int], factor: tuple[float, float, float]
) -> None:
    spacing = (0.7, 0.36, 0.36)
    target = tuple(s * f for s, f in zip(spacing, factor, strict=True))
    grid = plan_resampling(shape, spacing, target)
    affine = affine_from_axes([3.0, -2.0, 1.0], np.eye(3), spacing)
    new = grid.target_affine(affine)
    # outer voxel edges coincide: corner (-0.5) and far corner (n - 0.5) map to the same mm
    for corner_old, corner_new in (
        (np.full(3, -0.5), np.full(3, -0.5)),
        (np.array(shape) - 0.5, np.array(grid.target_shape) - 0.5),
    ):
        np.testing.assert_allclose(
            voxel_to_world(affine, corner_old), voxel_to_world(new, corner_new), atol=1e-9
        )


def test_labels_round_trip_when_upsampled_then_downsampled() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=(6, 8, 10)).astype(np.uint8)
    grid = plan_resampling(labels.shape, (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    fine = grid.labels_to_target(labels)
    assert fine.dtype == np.uint8 and fine.shape == (12, 16, 20)
    np.testing.assert_array_equal(grid.labels_to_source(fine), labels)


def test_image_resampling_preserves_constant_and_dtype() -> None:
    image = np.full((10, 12, 14), 321, dtype=np.uint16)
    grid = plan_resampling(image.shape, (0.7, 0.36, 0.36), (0.7, 0.73, 0.73))
    out = grid.image_to_target(image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 321.0)


@settings(max_examples=15, deadline=None)
@given(
    shape=st.tuples(*[st.integers(3, 20)] * 3),
    factor=st.sampled_from([0.5, 0.8, 2.0, 2.5]),
    chunk=st.integers(1, 7),
)
def test_chunked_resampling_equals_whole_volume(
    shape: tuple[int, int, int], factor: float, chunk: int
) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 4000, size=shape).astype(np.uint16)
    grid = plan_resampling(shape, (1.0, 1.0, 1.0), (factor, 1.0, factor))
    whole = ndimage.affine_transform(
        image.astype(np.float32),
        np.asarray(grid.scale),
        offset=[(f - 1.0) / 2.0 for f in grid.scale],
        output_shape=grid.target_shape,
        order=1,
        mode="nearest",
    )
    np.testing.assert_allclose(grid.image_to_target(image, chunk=chunk), whole, atol=1e-3)
    as_int = grid.image_to_target(image, dtype=np.uint16, chunk=chunk)
    assert as_int.dtype == np.uint16
    np.testing.assert_array_equal(as_int, np.clip(np.rint(whole), 0, 65535).astype(np.uint16))
