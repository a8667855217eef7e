"""Exact inference-time rewrites of segmentation networks (MONAI ``UNet`` first), for speed.

:func:`optimise_network` returns a copy of an eval-mode network whose forward gives the same
outputs within float round-off (max |logit difference| ~1e-5 in fp32), faster on CPUs:

- **Instance norm + activation in place** (:class:`NormAct`): PyTorch's CPU instance norm
  reshapes to a batch norm of ``1 x (N*C)`` channels and is 3-5x slower than two plain
  reductions; the activation after it (PReLU with one slope, LeakyReLU, ReLU) runs in place on
  the same buffer instead of allocating another. Two-pass statistics (mean, then the norm of
  the centred values), so no cancellation. In bf16 the norm is PyTorch's own (it accumulates
  in fp32 without converting the tensor; the fp32 two-pass version needs two conversions and
  was ~2x slower on an AVX512-BF16/AMX CPU), the activation still in place.
- **Residual conv merged into the first conv** (:class:`MergedResidualUnit`): in MONAI's
  ``ResidualUnit`` the residual path of a strided unit is a convolution with the same kernel,
  stride and padding as the unit's first convolution, on the same input: one convolution with
  twice the output channels does both (a wider GEMM, one pass over the input).
- **Sub-pixel transposed convolutions** (:class:`SubPixelConvTranspose`, optional): a
  ConvTranspose of stride ``s`` as a convolution at low resolution to ``s**D x C_out``
  channels followed by a pixel shuffle. Used where :data:`SUBPIXEL_DEFAULT` says it pays.
- **oneDNN for every convolution** (:class:`OneDNNConv`): PyTorch sends a convolution to
  its slow native kernel when ``N x C x D x H`` (the first four sizes) is below 20,480, a
  heuristic written for 2D that in 3D catches whole U-Net levels (16 channels at 8 x 96 x 96
  runs at ~6 GFLOP/s native against ~100 in oneDNN on one AVX2 core); the rewrite calls
  oneDNN directly on CPU tensors.
- **Channels-last layout** for the whole network (:func:`to_layout`): on AVX2 CPUs oneDNN's
  NHWC kernels run the few-channel full-resolution convolutions (10-32 channels at 384^2)
  2-3x faster than NCHW.

Rewrites apply where a module matches exactly what they assume (checked field by field);
anything else is left as it was, so every network still runs, only unmatched parts at the
old speed. Weights are copied, never modified in place.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional

log = logging.getLogger(__name__)

SUBPIXEL_DEFAULT = False
"""Whether :func:`optimise_network` rewrites stride-2 transposed convolutions to sub-pixel
convolutions by default (measured slower than channels-last ConvTranspose on this project's
AVX2 CPU; see docs/network_speed.md)."""


@dataclass
class RewriteReport:
    """What :func:`optimise_network` changed.

    Attributes:
        norm_act: instance norms (with their activation) replaced by :class:`NormAct`.
        merged_residual: residual units whose residual conv was merged into the first conv.
        folded_identity: residual units ``conv(x) + x`` folded into one convolution.
        onednn: convolutions sent to oneDNN directly (:class:`OneDNNConv`).
        subpixel: transposed convolutions replaced by sub-pixel convolutions.
        skipped: modules of a rewritable kind left alone, with why.
    """

    norm_act: int = 0
    merged_residual: int = 0
    folded_identity: int = 0
    onednn: int = 0
    subpixel: int = 0
    skipped: list[str] = field(default_factory=list)


class NormAct(nn.Module):
    """Instance norm (optionally affine) then an optional leaky activation, in place.

    ``forward(x)`` normalises each (sample, channel) of ``x`` (N, C, *spatial), any float
    dtype and memory layout, over its spatial axes: ``(x - mean) / sqrt(var + eps) * weight +
    bias`` (biased variance, as ``InstanceNorm``), then ``x if x >= 0 else slope * x`` when
    ``slope`` is given (PReLU with one parameter, LeakyReLU; 0 = ReLU). In fp32/fp64 ``x`` is
    overwritten and returned: only use it on a tensor nothing else reads (a convolution's
    fresh output). In bf16 PyTorch's instance norm (statistics accumulated in fp32) writes a
    new tensor and the activation runs in place on it.
    """

    def __init__(
        self,
        channels: int,
        eps: float,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        slope: float | None,
    ):
        super().__init__()
        self.channels = channels
        self.eps = float(eps)
        self.slope = slope
        self.weight = None if weight is None else nn.Parameter(weight.detach().clone(), False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (torch.float32, torch.float64):
            # Reduced precision (bf16): PyTorch's own instance norm accumulates its statistics
            # in fp32 without an fp32 copy of x, ~2x faster than two conversions (measured on
            # an AVX512-BF16/AMX CPU; docs/network_speed.md); the activation stays in place.
            x = functional.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
            return self._activate(x)
        dims = tuple(range(2, x.ndim))
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        mean = x.mean(dim=dims, keepdim=True)
        x.sub_(mean)
        var = torch.linalg.vector_norm(x, dim=dims, keepdim=True).square_()
        scale = torch.rsqrt(var.div_(math.prod(x.shape[2:])).add_(self.eps))
        if self.weight is not None:
            scale = scale * self.weight.to(scale.dtype).view(bshape)
        x.mul_(scale.to(x.dtype))
        if self.bias is not None:
            x.add_(self.bias.to(x.dtype).view(bshape))
        return self._activate(x)

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        if self.slope is not None:
            if self.slope == 0.0:
                x.relu_()
            else:
                functional.leaky_relu_(x, self.slope)
        return x

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, slope={self.slope}"


class OneDNNConv(nn.Module):
    """A ``Conv2d``/``Conv3d`` (zero padding given as numbers) that runs on oneDNN whenever its
    input is an fp32 CPU tensor (bf16 too where the CPU has native bf16), whatever the input's
    size; elsewhere it runs as the original. Same weights, same outputs within round-off."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d):
        super().__init__()
        self.conv = conv
        self.bf16 = _bf16_native()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if _onednn_ok(x, conv.weight, self.bf16):
            return torch.mkldnn_convolution(
                x,
                conv.weight,
                conv.bias,
                list(conv.padding),  # type: ignore[arg-type]
                list(conv.stride),
                list(conv.dilation),
                conv.groups,
            )
        return conv(x)  # type: ignore[no-any-return]


def _onednn_ok(x: torch.Tensor, weight: torch.Tensor, bf16: bool) -> bool:
    # torch.compile cannot trace mkldnn_convolution (fake tensors); inductor lowers the plain
    # convolution itself
    return (
        not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and bf16))
        and weight.dtype == x.dtype
        and not (torch.is_grad_enabled() and weight.requires_grad)
    )


@functools.cache
def _bf16_native() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _onednn_everywhere(module: nn.Module, report: RewriteReport) -> nn.Module:
    if type(module) in (nn.Conv2d, nn.Conv3d):
        conv: nn.Conv2d | nn.Conv3d = module  # type: ignore[assignment]
        if conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
            report.onednn += 1
            return OneDNNConv(conv)
        return module
    if isinstance(module, OneDNNConv):
        return module
    for name, child in list(module.named_children()):
        new = _onednn_everywhere(child, report)
        if new is not child:
            setattr(module, name, new)
    return module


class ConvNormAct(nn.Module):
    """A convolution (any kind) followed by :class:`NormAct` on its fresh output."""

    def __init__(self, conv: nn.Module, norm_act: NormAct):
        super().__init__()
        self.conv = conv
        self.norm_act = norm_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_act(self.conv(x))


class MergedResidualUnit(nn.Module):
    """MONAI ``ResidualUnit`` with its residual conv computed by the first conv.

    ``conv`` outputs ``2 * channels``: the first half is the unit's first convolution,
    then ``first_post`` (its norm and activation) and ``rest`` (the other sub-units);
    the second half is the residual, added at the end.
    """

    def __init__(self, conv: nn.Module, channels: int, first_post: nn.Module, rest: nn.Module):
        super().__init__()
        self.conv = conv
        self.channels = channels
        self.first_post = first_post
        self.rest = rest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        main = self.rest(self.first_post(y[:, : self.channels]))
        return main + y[:, self.channels :]


class SubPixelConvTranspose(nn.Module):
    """``ConvTranspose{2,3}d`` with stride ``s`` (output ``s x`` the input) as a convolution
    at the input's resolution to ``s**D * C_out`` channels plus a pixel shuffle.

    Output phase ``a`` (0 <= a < s) of output ``o = s*m + a`` along an axis takes input
    ``m + d`` with kernel tap ``k = a + p - s*d``; the low-resolution kernel covers the offsets
    ``d`` any phase uses, zero where a phase has no tap.
    """

    def __init__(self, convt: nn.ConvTranspose2d | nn.ConvTranspose3d):
        super().__init__()
        dims = convt.weight.ndim - 2
        stride = _tuple(convt.stride, dims)
        kernel = _tuple(convt.kernel_size, dims)
        pad = _tuple(convt.padding, dims)
        c_in, c_out = convt.in_channels, convt.out_channels
        offsets: list[tuple[int, int]] = []
        for s, k, p in zip(stride, kernel, pad, strict=True):
            lo = min(-((k - 1 - a - p) // s) for a in range(s))  # ceil((a + p - k + 1) / s)
            hi = max((a + p) // s for a in range(s))
            offsets.append((lo, hi))
        taps = tuple(hi - lo + 1 for lo, hi in offsets)
        w = convt.weight.detach()  # (C_in, C_out, *kernel)
        phases = list(itertools.product(*(range(s) for s in stride)))
        new_w = torch.zeros((c_out, len(phases), c_in, *taps), dtype=w.dtype, device=w.device)
        for pi, phase in enumerate(phases):
            for t in itertools.product(*(range(n) for n in taps)):
                ks = tuple(
                    a + p - s * (lo + ti)
                    for a, p, s, (lo, _), ti in zip(phase, pad, stride, offsets, t, strict=True)
                )
                if all(0 <= kk < kmax for kk, kmax in zip(ks, kernel, strict=True)):
                    src_index: tuple[int | slice, ...] = (slice(None), slice(None), *ks)
                    dst_index: tuple[int | slice, ...] = (slice(None), pi, slice(None), *t)
                    new_w[dst_index] = w[src_index].T
        self.dims = dims
        self.stride = stride
        self.c_out = c_out
        self.padding = tuple(max(-lo, hi) for lo, hi in offsets)
        self.start = tuple(lo + pp for (lo, _), pp in zip(offsets, self.padding, strict=True))
        self.weight = nn.Parameter(new_w.reshape(c_out * len(phases), c_in, *taps), False)
        bias = None
        if convt.bias is not None:
            bias = convt.bias.detach().repeat_interleave(len(phases))
        self.bias = None if bias is None else nn.Parameter(bias, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_ok(x, self.weight, _bf16_native()):
            y = torch.mkldnn_convolution(
                x, self.weight, self.bias, list(self.padding), [1] * self.dims, [1] * self.dims, 1
            )
        else:
            conv = functional.conv2d if self.dims == 2 else functional.conv3d
            y = conv(x, self.weight, self.bias, padding=self.padding)
        spatial = x.shape[2:]
        crop = [slice(st, st + n) for st, n in zip(self.start, spatial, strict=True)]
        y = y[(slice(None), slice(None), *crop)]
        if self.dims == 2:
            return (
                functional.pixel_shuffle(y, self.stride[0])
                if _same(self.stride)
                else (_shuffle(y, self.c_out, self.stride))
            )
        return _shuffle(y, self.c_out, self.stride)


def _same(values: Sequence[int]) -> bool:
    return len(set(values)) == 1


def _shuffle(y: torch.Tensor, c_out: int, stride: Sequence[int]) -> torch.Tensor:
    """(N, C_out * prod(s), *n) with channel order (c, a_1..a_D) -> (N, C_out, *(s_d n_d))."""
    n = y.shape[0]
    spatial = y.shape[2:]
    dims = len(stride)
    y = y.reshape(n, c_out, *stride, *spatial)
    # (N, C, s1..sD, n1..nD) -> (N, C, n1, s1, n2, s2, ...)
    order = [0, 1] + [p for d in range(dims) for p in (2 + dims + d, 2 + d)]
    out_shape = (n, c_out, *(s * m for s, m in zip(stride, spatial, strict=True)))
    return y.permute(order).reshape(out_shape)


def _tuple(value: object, dims: int) -> tuple[int, ...]:
    if isinstance(value, tuple | list):
        return tuple(int(v) for v in value)
    if isinstance(value, int):
        return (value,) * dims
    raise TypeError(f"expected an int or a tuple of ints, got {value!r}")


def optimise_network(
    network: nn.Module, *, subpixel: bool = SUBPIXEL_DEFAULT, report: RewriteReport | None = None
) -> nn.Module:
    """An exact, faster copy of ``network`` for inference (the original is not touched).

    Args:
        network: a segmentation network (MONAI ``UNet`` is rewritten fully; other networks get
            the instance-norm rewrite wherever an ``InstanceNorm`` is followed by nothing
            else inside the same MONAI ``ADN`` block).
        subpixel: also rewrite stride > 1 transposed convolutions as sub-pixel convolutions.
        report: filled with what was rewritten.

    Returns:
        the rewritten copy, in eval mode, on the original's device and dtype.
    """
    report = report if report is not None else RewriteReport()
    net = copy.deepcopy(network).eval()
    return _onednn_everywhere(_rewrite(net, subpixel, report), report)


def _rewrite(module: nn.Module, subpixel: bool, report: RewriteReport) -> nn.Module:
    from monai.networks.blocks.convolutions import Convolution, ResidualUnit

    if isinstance(module, ResidualUnit):
        merged = _merge_residual(module, subpixel, report)
        if merged is not None:
            return merged
        folded = _fold_identity(module, report)
        if folded is not None:
            return folded
    if isinstance(module, Convolution):
        return _rewrite_convolution(module, subpixel, report)
    if (
        subpixel
        and isinstance(module, nn.ConvTranspose2d | nn.ConvTranspose3d)
        and _subpixel_ok(module)
    ):
        report.subpixel += 1
        return SubPixelConvTranspose(module)
    for name, child in list(module.named_children()):
        new = _rewrite(child, subpixel, report)
        if new is not child:
            setattr(module, name, new)
    return module


def _subpixel_ok(convt: nn.Module) -> bool:
    if not isinstance(convt, nn.ConvTranspose2d | nn.ConvTranspose3d):
        return False
    dims = convt.weight.ndim - 2
    stride = _tuple(convt.stride, dims)
    kernel = _tuple(convt.kernel_size, dims)
    pad = _tuple(convt.padding, dims)
    out_pad = _tuple(convt.output_padding, dims)
    dil = _tuple(convt.dilation, dims)
    return (
        convt.groups == 1
        and all(d == 1 for d in dil)
        and any(s > 1 for s in stride)
        and all(
            k - 2 * p + op == s for k, p, op, s in zip(kernel, pad, out_pad, stride, strict=True)
        )
        and isinstance(convt.padding, tuple)
    )


def _norm_act_of(adn: nn.Module) -> NormAct | None:
    """The :class:`NormAct` equal to a MONAI ``ADN`` block in eval mode, or ``None``."""
    children = dict(adn.named_children())
    order = [name for name, _ in adn.named_children()]
    if [n for n in order if n != "D"] not in (["N", "A"], ["N"]):
        return None
    norm = children["N"]
    if not isinstance(norm, nn.InstanceNorm1d | nn.InstanceNorm2d | nn.InstanceNorm3d):
        return None
    if norm.track_running_stats:
        return None
    slope = _slope(children.get("A"))
    if "A" in children and slope is None:
        return None
    drop = children.get("D")
    if drop is not None and not isinstance(drop, nn.Dropout | nn.Dropout2d | nn.Dropout3d):
        return None
    weight = norm.weight if norm.affine else None
    bias = norm.bias if norm.affine else None
    return NormAct(norm.num_features, norm.eps, weight, bias, slope)


def _slope(act: nn.Module | None) -> float | None:
    """The negative slope of a leaky activation (PReLU with one parameter, LeakyReLU, ReLU)."""
    if isinstance(act, nn.PReLU) and act.weight.numel() == 1:
        return float(act.weight.detach().float().item())
    if isinstance(act, nn.LeakyReLU):
        return float(act.negative_slope)
    if isinstance(act, nn.ReLU):
        return 0.0
    return None


def _rewrite_convolution(block: nn.Module, subpixel: bool, report: RewriteReport) -> nn.Module:
    conv = block.get_submodule("conv")
    if (
        subpixel
        and isinstance(conv, nn.ConvTranspose2d | nn.ConvTranspose3d)
        and _subpixel_ok(conv)
    ):
        report.subpixel += 1
        conv = SubPixelConvTranspose(conv)
    adn = getattr(block, "adn", None)
    if adn is None:
        return conv if conv is not block.conv else block
    norm_act = _norm_act_of(adn)
    if norm_act is None:
        report.skipped.append(f"{type(block).__name__}: ADN {list(dict(adn.named_children()))}")
        if conv is not block.conv:
            block.conv = conv
        return block
    report.norm_act += 1
    return ConvNormAct(conv, norm_act)


def _merge_residual(unit: nn.Module, subpixel: bool, report: RewriteReport) -> nn.Module | None:
    """A :class:`MergedResidualUnit` for a MONAI ``ResidualUnit``, or ``None`` if its
    residual is not a convolution of the same geometry as its first convolution."""
    residual = unit.get_submodule("residual")
    units = list(unit.get_submodule("conv").children())
    if not units or not isinstance(residual, nn.Conv2d | nn.Conv3d):
        return None
    first = units[0]
    conv = getattr(first, "conv", None)
    if type(conv) is not type(residual) or not isinstance(conv, nn.Conv2d | nn.Conv3d):
        return None
    same = all(
        getattr(conv, a) == getattr(residual, a)
        for a in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")
    )
    if not same or conv.groups != 1 or residual.groups != 1 or conv.padding_mode != "zeros":
        return None
    if residual.padding_mode != "zeros" or (conv.bias is None) != (residual.bias is None):
        return None
    merged = type(conv)(
        conv.in_channels,
        2 * conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        merged.weight.copy_(torch.cat([conv.weight, residual.weight]))
        if merged.bias is not None:
            merged.bias.copy_(torch.cat([conv.bias, residual.bias]))  # type: ignore[list-item]
    merged.requires_grad_(False)
    adn = getattr(first, "adn", None)
    first_post: nn.Module = nn.Identity()
    if adn is not None:
        norm_act = _norm_act_of(adn)
        if norm_act is None:
            return None
        first_post = norm_act
        report.norm_act += 1
    rest = nn.Sequential(*(_rewrite(u, subpixel, report) for u in units[1:]))
    report.merged_residual += 1
    return MergedResidualUnit(merged, conv.out_channels, first_post, rest)


def _fold_identity(unit: nn.Module, report: RewriteReport) -> nn.Module | None:
    """``conv(x) + x`` (a MONAI ``ResidualUnit`` with an identity residual and one plain
    convolution, no norm or activation: U-Net's last layer) as one convolution whose centre
    tap adds 1 from each channel to itself. ``None`` if the unit is not of that form."""
    if not isinstance(unit.get_submodule("residual"), nn.Identity):
        return None
    units = list(unit.get_submodule("conv").children())
    if len(units) != 1 or getattr(units[0], "adn", None) is not None:
        return None
    conv = getattr(units[0], "conv", None)
    if not isinstance(conv, nn.Conv2d | nn.Conv3d) or conv.in_channels != conv.out_channels:
        return None
    kernel = conv.kernel_size
    same_size = all(
        s == 1 and d == 1 and k % 2 == 1 and p == d * (k - 1) // 2
        for s, d, k, p in zip(conv.stride, conv.dilation, kernel, conv.padding, strict=True)  # type: ignore[arg-type]
    )
    if not same_size or conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    folded = copy.deepcopy(conv).requires_grad_(False)
    centre = tuple(k // 2 for k in kernel)
    with torch.no_grad():
        for c in range(conv.out_channels):
            folded.weight[(c, c, *centre)] += 1.0
    report.folded_identity += 1
    return folded


def to_layout(network: nn.Module, dims: int) -> nn.Module:
    """``network`` in channels-last memory format (2D: NHWC, 3D: NDHWC), in place."""
    fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
    return network.to(memory_format=fmt)  # type: ignore[call-overload,no-any-return]
