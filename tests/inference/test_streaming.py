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


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clone()


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
        dataclasses.replace(s, weighted_sum=s.weighted_sum.clone(), weight=_clone(s.weight))
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
    from monai.inferers.utils import sliding_window_inference
    from monai.networks.nets.unet import UNet

    torch.manual_seed(sum(shape))
    net = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,))
    net.eval()
    image = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
    roi = (8, 8, 8)
    with torch.inference_mode():
        want = sliding_window_inference(torch.from_numpy(image)[None], roi, 1, net, overlap)
    slabs = [
        dataclasses.replace(s, weighted_sum=s.weighted_sum.clone(), weight=_clone(s.weight))
        for s in stream_slabs(
            image, net, roi_size_vox=roi, out_channels=3, overlap=overlap, blend="constant"
        )
    ]
    got = stitch_dense(iter(slabs), shape, 3)
    np.testing.assert_allclose(got.numpy(), want[0].numpy(), rtol=1e-4, atol=1e-5)


def test_slicewise_gaussian_blending_matches_monai_2d_sliding_window() -> None:
    """A 2D network's windows (slicewise) blended with a Gaussian give MONAI's 2D
    ``sliding_window_inference`` with ``mode="gaussian"`` on the same slices, voxel for voxel:
    only the in-plane position is weighted, not the slice's place in the window."""
    from monai.inferers.utils import sliding_window_inference
    from monai.networks.nets.unet import UNet

    torch.manual_seed(3)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,))
    net.eval()
    image = np.random.default_rng(2).normal(size=(1, 6, 40, 44)).astype(np.float32)

    def per_slice(batch: torch.Tensor) -> torch.Tensor:  # (B, C, d, h, w) as B*d slices
        b, c, d, h, w = batch.shape
        out = net(batch.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w))
        return out.reshape(b, d, -1, h, w).permute(0, 2, 1, 3, 4)

    with torch.inference_mode():
        want = sliding_window_inference(
            torch.from_numpy(image[0])[:, None], (16, 16), 4, net, 0.25, mode="gaussian"
        )
        slabs = [
            dataclasses.replace(s, weighted_sum=s.weighted_sum.clone(), weight=_clone(s.weight))
            for s in stream_slabs(
                image,
                per_slice,
                roi_size_vox=(4, 16, 16),
                out_channels=3,
                overlap=(0.0, 0.25, 0.25),
                slicewise=True,
            )
        ]
    got = stitch_dense(iter(slabs), image.shape[1:], 3)  # (C, I, J, K)
    want_cijk = want.permute(1, 0, 2, 3).numpy()
    np.testing.assert_allclose(got.numpy(), want_cijk, rtol=1e-4, atol=1e-5)


def test_largest_channel_labels_equal_argmax_with_ties() -> None:
    """Slab.labels (torch.max indices) equals torch.argmax, ties to the lowest channel, in
    fp32 and bf16, on a map full of ties."""
    from kneescope.inference.streaming import Slab

    values = torch.randint(0, 3, (10, 11, 17, 19)).float()
    for dtype in (torch.float32, torch.bfloat16):
        slab = Slab(start=0, weighted_sum=values.to(dtype), weight=None)
        got = slab.labels(chunk=4)
        assert got.dtype == torch.uint8
        assert torch.equal(got.long(), torch.argmax(values.to(dtype), dim=0))


def test_tiling_windows_give_each_windows_own_labels() -> None:
    """Windows that tile the volume (overlap 0, sizes divide the shape) are not blended: the
    labels are each window's own argmax, for a real (random) network, with and without a
    row of several windows."""
    from monai.networks.nets.unet import UNet

    torch.manual_seed(3)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=4, channels=(4, 8), strides=(2,))
    net.eval()
    image = np.random.default_rng(2).normal(size=(1, 16, 8, 16)).astype(np.float32)
    for roi in ((8, 8, 8), (8, 8, 16)):
        want = np.zeros(image.shape[1:], dtype=np.uint8)
        for i in range(0, 16, roi[0]):
            for k in range(0, 16, roi[2]):
                box = (slice(i, i + roi[0]), slice(0, 8), slice(k, k + roi[2]))
                with torch.inference_mode():
                    out = net(torch.from_numpy(image[(slice(None), *box)])[None])
                want[box] = torch.argmax(out[0], dim=0).numpy()
        slabs = stream_slabs(image, net, roi_size_vox=roi, out_channels=4, overlap=0.0)
        np.testing.assert_array_equal(labels_from_slabs(slabs, image.shape[1:]), want)


def test_slicewise_stream_computes_each_slice_once() -> None:
    """With ``slicewise`` the last window along i is padded past the end instead of being
    aligned with it: every slice goes through the predictor exactly once, and the stitched
    values are still the input's."""
    seen: list[float] = []

    def recording(batch: torch.Tensor) -> torch.Tensor:
        seen.extend(float(v) for v in batch[:, 0, :, 0, 0].reshape(-1) if v > 0)
        return batch

    image = np.broadcast_to(np.arange(1, 11, dtype=np.float32)[:, None, None], (10, 6, 6))
    image = np.ascontiguousarray(image)[None]
    slabs = [
        dataclasses.replace(s, weighted_sum=s.weighted_sum.clone(), weight=_clone(s.weight))
        for s in stream_slabs(
            image, recording, roi_size_vox=(4, 6, 6), out_channels=1, slicewise=True
        )
    ]
    assert sorted(seen) == [float(v) for v in range(1, 11)]
    np.testing.assert_array_equal(stitch_dense(iter(slabs), (10, 6, 6), 1).numpy(), image)


def test_whole_plane_window() -> None:
    from kneescope.inference.windows import whole_plane_window

    assert whole_plane_window((8, 256, 256), (160, 384, 384), (16, 16)) == (8, 384, 384)
    assert whole_plane_window((8, 256, 256), (160, 370, 381), (16, 16)) == (8, 384, 384)
    assert whole_plane_window((8, 256, 256), (3, 64, 64), (16, 16)) == (3, 64, 64)
    assert whole_plane_window((8, 256, 256), (160, 600, 600), (16, 16)) == (5, 608, 608)
    assert whole_plane_window((8, 256, 256), (160, 2000, 2000), (16, 16)) is None
