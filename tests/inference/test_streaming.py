"""Sliding-window stitching: an identity network must reproduce its input exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kneescope.errors import InputError
from kneescope.inference.streaming import labels_from_slabs, stitch_dense, stream_slabs
from kneescope.inference.windows import window_starts


def identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 23)] * 3),
    roi=st.tuples(*[st.integers(1, 12)] * 3),
    overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9]),
    batch=st.integers(1, 5),
    channels=st.integers(1, 3),
)
def test_identity_network_reproduces_input(
    shape: tuple[int, int, int],
    roi: tuple[int, int, int],
    overlap: float,
    batch: int,
    channels: int,
) -> None:
    rng = np.random.default_rng(sum(shape) + sum(roi))
    image = rng.normal(size=(channels, *shape)).astype(np.float32)
    slabs = [
        dataclasses.replace(s, weighted_sum=s.weighted_sum.clone(), weight=s.weight.clone())
        for s in stream_slabs(
            image,
            identity,
            roi_size_vox=roi,
            out_channels=channels,
            overlap=overlap,
            sw_batch_size=batch,
        )
    ]
    # slabs tile axis i exactly once, in order
    starts = [s.start for s in slabs]
    sizes = [s.size for s in slabs]
    assert starts == sorted(starts)
    assert np.cumsum([0, *sizes])[:-1].tolist() == starts
    assert sum(sizes) == shape[0]
    out = stitch_dense(iter(slabs), shape, channels)
    np.testing.assert_allclose(out.numpy(), image, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 400), roi=st.integers(1, 200), overlap=st.floats(0.0, 0.95))
def test_window_starts_cover_axis(length: int, roi: int, overlap: float) -> None:
    starts = window_starts(length, roi, overlap)
    covered = np.zeros(length, dtype=bool)
    for s in starts:
        covered[s : s + roi] = True
    assert covered.all()
    assert starts[0] == 0
    assert all(s + min(roi, length) <= length for s in starts)


def test_labels_from_one_hot_identity() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=(9, 14, 11)).astype(np.uint8)
    one_hot = np.eye(4, dtype=np.float32)[truth].transpose(3, 0, 1, 2)
    slabs = stream_slabs(one_hot, identity, roi_size_vox=(4, 8, 8), out_channels=4, overlap=0.5)
    np.testing.assert_array_equal(labels_from_slabs(slabs, truth.shape), truth)


def test_wrong_output_channels_is_a_clear_error() -> None:
    image = np.zeros((1, 8, 8, 8), dtype=np.float32)
    with pytest.raises(InputError, match="expected"):
        list(stream_slabs(image, identity, roi_size_vox=(4, 4, 4), out_channels=3))


def test_bad_overlap_rejected() -> None:
    with pytest.raises(InputError, match="overlap"):
        window_starts(10, 4, 1.0)


@settings(max_examples=8, deadline=None)
@given(
    shape=st.tuples(st.integers(8, 20), st.integers(8, 20), st.integers(8, 20)),
    overlap=st.sampled_from([0.25, 0.5]),
)
def test_constant_blending_matches_monai_sliding_window(
    shape: tuple[int, int, int], overlap: float
) -> None:
    """With MONAI's default (constant) weighting, the streamed mean equals
    ``monai.inferers.sliding_window_inference`` for a real (random) network, voxel for voxel."""
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import UNet

    torch.manual_seed(sum(shape))
    net = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,))
    net.eval()
    image = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
    roi = (8, 8, 8)
    with torch.inference_mode():
        want = sliding_window_inference(torch.from_numpy(image)[None], roi, 1, net, overlap)
    slabs = [
        dataclasses.replace(s, weighted_sum=s.weighted_sum.clone(), weight=s.weight.clone())
        for s in stream_slabs(
            image, net, roi_size_vox=roi, out_channels=3, overlap=overlap, blend="constant"
        )
    ]
    got = stitch_dense(iter(slabs), shape, 3)
    np.testing.assert_allclose(got.numpy(), want[0].numpy(), rtol=1e-4, atol=1e-5)
