"""Exact inference rewrites (kneescope.inference.fast_network) and the optimised predictor:
same outputs as the plain network within float round-off, same labels on a real knee."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.networks.nets.unet import UNet
from torch import nn
from torch.nn import functional

from kneescope.core import Volume
from kneescope.inference import predictor as predictor_module
from kneescope.inference.fast_network import (
    NormAct,
    OneDNNConv,
    RewriteReport,
    SubPixelConvTranspose,
    optimise_network,
    to_layout,
)
from kneescope.inference.predictor import make_predictor
from kneescope.inference.segmentation_model import load_model
from kneescope.inference.segmenter import SegmentConfig, Segmenter

SHIPPED_2D = Path(__file__).parents[2] / "src" / "kneescope" / "pretrained" / "knee-seg-2d.pt"


def _unet(dims: int, res_units: int, act: tuple[str, dict[str, Any]] = ("prelu", {})) -> nn.Module:
    torch.manual_seed(3)
    net = UNet(
        spatial_dims=dims,
        in_channels=1,
        out_channels=4,
        channels=(4, 8, 16),
        strides=(2, 2),
        num_res_units=res_units,
        norm=("instance", {"affine": True}),
        act=act,
    ).eval()
    with torch.no_grad():  # trained-looking affine norms and PReLU slopes, not the defaults
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm2d | nn.InstanceNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.4)
    return net


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max |a - b| relative to the largest |a|."""
    return float((a - b).abs().max() / a.abs().max())


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("res_units", [0, 1, 2])
@pytest.mark.parametrize("subpixel", [False, True])
def test_rewritten_unet_equals_the_original(dims: int, res_units: int, subpixel: bool) -> None:
    net = _unet(dims, res_units)
    report = RewriteReport()
    fast = optimise_network(net, subpixel=subpixel, report=report)
    x = torch.randn((2, 1) + (12,) * dims if dims == 3 else (2, 1, 32, 32))
    with torch.inference_mode():
        ref = net(x)
        out = fast(x)
        out_cl = to_layout(fast, dims)(
            x.contiguous(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
        )
    assert _close(ref, out) < 1e-5
    assert _close(ref, out_cl) < 1e-4
    assert torch.equal(ref.argmax(1), out.argmax(1))
    # what was rewritten: every norm, every strided residual unit, the identity-residual head
    norms = sum(isinstance(m, nn.InstanceNorm2d | nn.InstanceNorm3d) for m in net.modules())
    assert report.norm_act == norms
    assert report.merged_residual == (2 if res_units else 0)
    assert report.folded_identity == (1 if res_units else 0)
    assert report.subpixel == (2 if subpixel else 0)
    assert report.onednn == sum(isinstance(m, OneDNNConv) for m in fast.modules()) > 0
    assert not any(isinstance(m, nn.InstanceNorm2d | nn.InstanceNorm3d) for m in fast.modules())
    # the original is untouched
    assert any(isinstance(m, nn.InstanceNorm2d | nn.InstanceNorm3d) for m in net.modules())


def test_relu_and_leaky_relu_units_equal_the_original() -> None:
    for act in (("relu", {}), ("leakyrelu", {"negative_slope": 0.1})):
        net = _unet(2, 1, act)
        fast = optimise_network(net)
        x = torch.randn(3, 1, 16, 16)
        with torch.inference_mode():
            assert _close(net(x), fast(x)) < 1e-5


def test_unmatched_layers_are_left_alone() -> None:
    """Batch norm (and a per-channel PReLU) are not rewritten; the output is still equal."""
    torch.manual_seed(0)
    net = UNet(2, 1, 3, (4, 8), (2,), num_res_units=1, norm="batch", act=("prelu", {})).eval()
    report = RewriteReport()
    fast = optimise_network(net, report=report)
    assert report.norm_act == 0
    assert report.skipped  # the batch-norm ADN blocks, named
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        assert _close(net(x), fast(x)) < 1e-5


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding"),
    [(3, 2, 1, 1), (2, 2, 0, 0), (4, 2, 1, 0), (3, 3, 0, 0), (5, 2, 2, 1)],
)
@pytest.mark.parametrize("dims", [2, 3])
def test_subpixel_convolution_equals_conv_transpose(
    kernel: int, stride: int, padding: int, output_padding: int, dims: int
) -> None:
    torch.manual_seed(kernel * 10 + stride)
    cls = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
    convt = cls(5, 3, kernel, stride=stride, padding=padding, output_padding=output_padding)
    x = torch.randn((2, 5) + (6,) * dims)
    with torch.inference_mode():
        ref = convt(x)
        out = SubPixelConvTranspose(convt)(x)
    assert out.shape == ref.shape == (2, 3) + (6 * stride,) * dims
    assert _close(ref, out) < 1e-5


@pytest.mark.parametrize("shape", [(1, 16, 4, 12, 12), (2, 8, 10, 10)])
def test_onednn_conv_equals_the_convolution(shape: tuple[int, ...]) -> None:
    """Small inputs PyTorch would send to its native kernel give the same result on oneDNN."""
    torch.manual_seed(2)
    dims = len(shape) - 2
    conv: nn.Conv2d | nn.Conv3d = (
        nn.Conv2d(shape[1], 6, 3, stride=(1, 2), padding=1)
        if dims == 2
        else nn.Conv3d(shape[1], 6, 3, stride=(1, 1, 2), padding=1)
    )
    x = torch.randn(shape)
    with torch.inference_mode():
        ref = conv(x)
        out = OneDNNConv(conv)(x)
    assert out.shape == ref.shape
    assert _close(ref, out) < 1e-5


def test_onednn_conv_runs_the_plain_convolution_under_torch_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While torch.compile traces (it cannot trace ``mkldnn_convolution``), OneDNNConv runs
    the module's own convolution, for inductor to lower; same result."""
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 9, 9)
    calls: list[torch.Tensor] = []
    conv.register_forward_hook(lambda mod, inp, out: calls.append(out))
    fast = OneDNNConv(conv)
    with torch.inference_mode():
        fast(x)
        assert not calls  # eager: oneDNN directly, the module is not called
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        out = fast(x)
    assert len(calls) == 1
    assert _close(conv(x).detach(), out) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norm_act_equals_instance_norm_then_prelu(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    x = (torch.randn(2, 6, 20, 24) * 3 + 40).to(dtype)  # a large mean: no cancellation
    weight, bias = torch.rand(6) + 0.5, torch.randn(6)
    slope = 0.25
    ref = functional.prelu(
        functional.instance_norm(x.float(), weight=weight, bias=bias), torch.tensor([slope])
    )
    out = NormAct(6, 1e-5, weight, bias, slope)(x.clone())
    assert out.dtype == dtype
    assert _close(ref, out.float()) < (1e-5 if dtype == torch.float32 else 2e-2)
    plain = NormAct(6, 1e-5, None, None, None)(x.float().clone())
    assert _close(functional.instance_norm(x.float()), plain) < 1e-5


def test_optimised_predictor_slice_groups_on_two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 2D slice groups (several groups spread over 2 threads) give the plain outputs, in
    order, and the thread setting is restored."""
    net = _unet(2, 1)
    monkeypatch.setattr(predictor_module, "SLICE_PIXELS_PER_CALL", 2 * 32 * 32)
    cpu = torch.device("cpu")
    plain = make_predictor(net, mode="2d", device=cpu, autocast_dtype=None, optimise=False)
    fast = make_predictor(net, mode="2d", device=cpu, autocast_dtype=None, optimise=True)
    batch = torch.randn(2, 1, 7, 32, 32)  # 14 slices -> 7 groups of 2
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ref, out = plain(batch), fast(batch)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert out.shape == ref.shape == (2, 4, 7, 32, 32)
    assert _close(ref, out) < 1e-5
    assert torch.equal(ref.argmax(1), out.argmax(1))


def test_optimised_predictor_3d() -> None:
    net = _unet(3, 1)
    cpu = torch.device("cpu")
    plain = make_predictor(net, mode="3d", device=cpu, autocast_dtype=None, optimise=False)
    fast = make_predictor(net, mode="3d", device=cpu, autocast_dtype=None)
    batch = torch.randn(3, 1, 8, 16, 16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = fast(batch)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert out.is_contiguous()
    assert _close(plain(batch), out) < 1e-4
    assert _close(plain(batch[:1]), fast(batch[:1])) < 1e-4


def test_shipped_model_same_labels_on_a_real_knee() -> None:
    """The shipped 2D model on 2 slices of a synthetic knee (resampled to its grid): the
    optimised engine's label map equals the plain engine's, and both find the bones."""
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import SMALL, sample_knee_params

    sample = render_knee(sample_knee_params(np.random.default_rng(510100), side="right"), SMALL)
    i0 = sample.image.shape[0] // 2  # 2 slices of 2.3 mm: one 8-slice window on its grid
    affine = sample.image.affine_ras.copy()
    affine[:3, 3] += affine[:3, 0] * i0
    image = Volume(sample.image.array[i0 : i0 + 2], affine)
    truth = sample.labels.array[i0 : i0 + 2]
    model = load_model(SHIPPED_2D)
    seg = Segmenter(model, SegmentConfig(device="cpu", precision="fp32"))
    fast_labels = seg.segment(image, side="right").labels.array
    seg.predictor = make_predictor(
        seg.network, mode="2d", device=torch.device("cpu"), autocast_dtype=None, optimise=False
    )
    plain_labels = seg.segment(image, side="right").labels.array
    assert (fast_labels == plain_labels).mean() > 0.9999
    for label in (1, 3):  # femur, tibia: the model works on this knee
        both = ((fast_labels == label) & (truth == label)).sum()
        dice = 2 * both / ((fast_labels == label).sum() + (truth == label).sum())
        assert dice > 0.8
