"""An exact training step of an nnU-Net-class DynUNet whose full-resolution stage runs in slabs.

At 160x384x384 the full-resolution stage of the nnU-Net U-Net (``unet3d-nnunet``: the input
block, the first strided convolution, the last decoder block and the 1x1 output convolution,
32-64 channels at 23.6 M voxels) holds most of a training step's memory: every one of its
tensors is 1.5 GB in bf16, 3 GB in fp32, and the backward pass keeps several at once.
:func:`slab_step` never builds those tensors whole. It computes the stage in slabs of
``slab_vox`` slices along the first spatial axis, with halos (one slice per 3^3 convolution),
and keeps only per-channel instance-norm statistics, the image and labels, and the
half-resolution tensors that enter and leave the rest of the network (``inner``: levels 1-5,
run by ordinary autograd, with checkpointing or offload if asked).

Instance norm needs statistics over the whole volume, so the forward pass runs once per
normalisation (accumulating mean and variance slab by slab, in float64), and the backward
pass treats the statistics as inputs of each slab: the gradient reaching a statistic is
summed over slabs, then pushed back through it with one more pass (``d mean / d c = 1/N``,
``d var / d c = 2 (c - mean) / N``), in reverse dependency order (loss, norm d, norm c, inner
network, strided convolution, norm b, norm a). Loss and gradients equal the plain step's
within float round-off (``tests/memory/test_full_volume_slabs.py``); the price is
recomputation: the stage's convolutions run about ten times forward and five times backward,
3x the FLOPs of the plain step at 160x384x384 (counted by the planner's tracker). The loss
must be a function of sums over voxels (:class:`SlabLoss`: cross-entropy, or the
segmentation task's Dice + cross-entropy, :class:`DiceCESlabLoss`).

Shapes: image ``(B, 1, D, H, W)`` float32, labels ``(B, D, H, W)`` or ``(B, 1, D, H, W)``
int64; ``D`` even and every axis a multiple of the network's divisor.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.nn import functional

from kneescope.errors import ConfigError

_EPS = 1e-5
_SLOPE = 0.01


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is a half type (as autocast runs norms and the loss), else as is."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def check_slab_network(net: nn.Module, slab_vox: int) -> None:
    """Raise ConfigError unless ``net`` is a DynUNet :func:`slab_step` can run exactly.

    Needs: MONAI ``DynUNet`` with plain (non-residual) blocks, instance norm, leaky ReLU, 3^3
    kernels, no deep supervision, first stride 1, second stride 2 along the slab axis, and
    ``slab_vox`` even and >= 2.
    """
    from monai.networks.blocks.dynunet_block import UnetBasicBlock
    from monai.networks.nets.dynunet import DynUNet

    m: Any = net
    if not isinstance(net, DynUNet):
        raise ConfigError(
            f"slab steps need a DynUNet (e.g. unet3d-nnunet), not {type(net).__name__}"
        )
    if m.deep_supervision or not isinstance(m.input_block, UnetBasicBlock):
        raise ConfigError(
            "slab steps need a DynUNet without deep supervision and without residual blocks"
        )
    blocks = [m.input_block, m.downsamples[0], m.upsamples[-1].conv_block]
    for block in blocks:
        for norm in (block.norm1, block.norm2):
            if not isinstance(norm, nn.InstanceNorm3d) or not norm.affine:
                raise ConfigError("slab steps need affine instance norm in the DynUNet")
        if not isinstance(block.lrelu, nn.LeakyReLU):
            raise ConfigError("slab steps need leaky ReLU activations in the DynUNet")
        for conv in (block.conv1.conv, block.conv2.conv):
            if tuple(conv.kernel_size) != (3, 3, 3) or tuple(conv.padding) != (1, 1, 1):
                raise ConfigError("slab steps need 3x3x3 convolutions with padding 1")
    if tuple(m.input_block.conv1.conv.stride) != (1, 1, 1):
        raise ConfigError("slab steps need a full-resolution first stage (stride 1)")
    if m.downsamples[0].conv1.conv.stride[0] != 2:
        raise ConfigError("slab steps need the second stage to halve the slab axis (stride 2)")
    if slab_vox < 2 or slab_vox % 2:
        raise ConfigError(f"slab thickness {slab_vox} must be an even number of slices >= 2")


class _Span:
    """A tensor covering global slices ``[lo, hi)`` of the slab axis (dim 2)."""

    def __init__(self, t: torch.Tensor, lo: int, hi: int) -> None:
        self.t, self.lo, self.hi = t, lo, hi

    def crop(self, lo: int, hi: int) -> _Span:
        assert self.lo <= lo and hi <= self.hi, (self.lo, self.hi, lo, hi)
        return _Span(self.t[:, :, lo - self.lo : hi - self.lo], lo, hi)


class SlabbedDynUNet:
    """The slab decomposition of a DynUNet (same modules, same parameters).

    ``depth`` is the full-resolution length of the slab axis. Statistics are ``(mean, var)``
    pairs, ``(B, C)`` float32, for the norms ``a`` (input block, 1st), ``b`` (input block,
    2nd), ``c`` and ``d`` (last decoder block).
    """

    def __init__(self, net: nn.Module, slab_vox: int) -> None:
        check_slab_network(net, slab_vox)
        self.net = cast(Any, net)  # a DynUNet (MONAI's blocks are untyped)
        self.slab_vox = slab_vox
        enc: Any = self.net.input_block
        dec: Any = self.net.upsamples[-1]
        self.conv_a, self.norm_a = enc.conv1, enc.norm1
        self.conv_b, self.norm_b = enc.conv2, enc.norm2
        self.down = self.net.downsamples[0].conv1
        self.transp = dec.transp_conv
        self.conv_c, self.norm_c = dec.conv_block.conv1, dec.conv_block.norm1
        self.conv_d, self.norm_d = dec.conv_block.conv2, dec.conv_block.norm2
        self.head: Any = self.net.output_block
        self.depth = 0

    # -- pieces ----------------------------------------------------------------------------
    def slabs(self) -> list[tuple[int, int]]:
        """``[a, b)`` ranges of the slab axis, ``b - a = slab_vox`` (the last may be shorter)."""
        return [
            (a, min(a + self.slab_vox, self.depth)) for a in range(0, self.depth, self.slab_vox)
        ]

    def _conv(self, conv: nn.Module, s: _Span) -> _Span:
        """A 3^3 convolution (padding 1) of ``s``; only slices not next to a cut are valid."""
        out = conv(s.t)
        lo = s.lo + (1 if s.lo > 0 else 0)
        hi = s.hi - (1 if s.hi < self.depth else 0)
        return _Span(out, s.lo, s.hi).crop(lo, hi)

    @staticmethod
    def _norm_act(
        c: torch.Tensor, norm: Any, stat: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """Instance norm with given whole-volume statistics (float32, as under autocast),
        then leaky ReLU."""
        mean, var = stat
        shape = (*mean.shape, 1, 1, 1)
        weight, bias = norm.weight.reshape(1, -1, 1, 1, 1), norm.bias.reshape(1, -1, 1, 1, 1)
        y = (c.to(mean.dtype) - mean.reshape(shape)) * torch.rsqrt(var + _EPS).reshape(shape)
        y = y * weight + bias
        return functional.leaky_relu(y, _SLOPE)

    def _x(self, x: torch.Tensor, lo: int, hi: int) -> _Span:
        lo, hi = max(lo, 0), min(hi, self.depth)
        return _Span(x[:, :, lo:hi], lo, hi)

    def ca(self, x: torch.Tensor, lo: int, hi: int) -> _Span:
        """Output of the first convolution over ``[lo, hi)`` (clipped to the volume)."""
        return self._conv(self.conv_a, self._x(x, lo - 1, hi + 1)).crop(
            max(lo, 0), min(hi, self.depth)
        )

    def cb(self, x: torch.Tensor, lo: int, hi: int, st: dict[str, Any]) -> _Span:
        ca = self.ca(x, lo - 1, hi + 1)
        a = _Span(self._norm_act(ca.t, self.norm_a, st["a"]), ca.lo, ca.hi)
        return self._conv(self.conv_b, a).crop(max(lo, 0), min(hi, self.depth))

    def skip(self, x: torch.Tensor, lo: int, hi: int, st: dict[str, Any]) -> _Span:
        """The input block's output (the skip) over ``[lo, hi)``."""
        cb = self.cb(x, lo, hi, st)
        return _Span(self._norm_act(cb.t, self.norm_b, st["b"]), cb.lo, cb.hi)

    def z(self, x: torch.Tensor, a: int, b: int, st: dict[str, Any]) -> torch.Tensor:
        """The strided convolution's output for half-resolution slices ``[a/2, b/2)``."""
        s = self.skip(x, a - 2, b + 2, st)  # s.lo is even (a even, clipped at 0)
        out = self.down(s.t)
        return out[:, :, a // 2 - s.lo // 2 : b // 2 - s.lo // 2]

    def cc(self, x: torch.Tensor, u: _Span, lo: int, hi: int, st: dict[str, Any]) -> _Span:
        """First decoder convolution over ``[lo, hi)``; ``u`` covers half-resolution slices."""
        lo2, hi2 = max(lo - 1, 0), min(hi + 1, self.depth)
        s = self.skip(x, lo2, hi2, st)
        ulo, uhi = lo2 // 2, (hi2 + 1) // 2
        t = _Span(self.transp(u.crop(ulo, uhi).t), 2 * ulo, 2 * uhi).crop(lo2, hi2)
        h = _Span(torch.cat((t.t, s.t), dim=1), lo2, hi2)  # promoted as in UnetUpBlock
        return self._conv(self.conv_c, h).crop(max(lo, 0), min(hi, self.depth))

    def cd(self, x: torch.Tensor, u: _Span, lo: int, hi: int, st: dict[str, Any]) -> _Span:
        cc = self.cc(x, u, lo - 1, hi + 1, st)
        d = _Span(self._norm_act(cc.t, self.norm_c, st["c"]), cc.lo, cc.hi)
        return self._conv(self.conv_d, d).crop(max(lo, 0), min(hi, self.depth))

    def logits(
        self, x: torch.Tensor, u: _Span, lo: int, hi: int, st: dict[str, Any]
    ) -> torch.Tensor:
        """Network output (logits) over ``[lo, hi)``."""
        cd = self.cd(x, u, lo, hi, st)
        return self.head(self._norm_act(cd.t, self.norm_d, st["d"]))

    def conv_out(
        self, key: str, x: torch.Tensor, u: _Span, a: int, b: int, st: dict[str, Any]
    ) -> torch.Tensor:
        """The convolution output that norm ``key`` normalises, over ``[a, b)``."""
        if key == "a":
            return self.ca(x, a, b).t
        if key == "b":
            return self.cb(x, a, b, st).t
        if key == "c":
            return self.cc(x, u, a, b, st).t
        return self.cd(x, u, a, b, st).t

    def u_range(self, a: int, b: int) -> tuple[int, int]:
        """Half-resolution slices of ``u`` that the logits over ``[a, b)`` read."""
        return max(a - 2, 0) // 2, (min(b + 2, self.depth) + 1) // 2

    def inner(self, z: torch.Tensor) -> torch.Tensor:
        """Levels 1-5 from the strided convolution's output to the last-but-one decoder
        block's output (half resolution), exactly as DynUNet runs them."""
        net, first = self.net, self.net.downsamples[0]
        h = first.lrelu(first.norm2(first.conv2(first.lrelu(first.norm1(z)))))
        skips = [h]
        for block in net.downsamples[1:]:
            h = block(h)
            skips.append(h)
        h = net.bottleneck(h)
        for up, skip in zip(net.upsamples[:-1], reversed(skips), strict=True):
            h = up(h, skip)
        return h


def _stats(
    parts: list[tuple[int, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-volume (mean, biased var), ``(B, C)``, from per-slab (n, mean, var), combined in
    float64 (Chan et al.) and returned in the slabs' dtype."""
    counts = [float(n) for n, _, _ in parts]
    n_total = sum(counts)
    means = torch.stack([m.double() for _, m, _ in parts])
    variances = torch.stack([v.double() for _, _, v in parts])
    weights = torch.tensor(counts, dtype=torch.float64, device=means.device).reshape(-1, 1, 1)
    mean = (weights * means).sum(0) / n_total
    m2 = (weights * (variances + (means - mean) ** 2)).sum(0)
    dtype = parts[0][1].dtype
    return mean.to(dtype), (m2 / n_total).to(dtype)


def _slab_stat(c: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(_wide(c), dim=(2, 3, 4), unbiased=False)
    return math.prod(c.shape[2:]), mean, var


class SlabLoss(Protocol):
    """A loss that is a function of sums over voxels, so that slabs can compute it.

    ``parts(logits, target)``: the additive statistics of one slab, a 1-D float tensor (the
    same length for every slab; logits ``(B, C, d, H, W)``, target ``(B, d, H, W)`` int64);
    ``total(sums, n_vox)``: the scalar loss from their sums over all slabs (``n_vox``: the
    target's element count). ``linear``: ``total`` is linear in ``sums`` (its gradient does
    not depend on them, so no extra forward pass is needed).
    """

    linear: bool

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    def total(self, sums: torch.Tensor, n_vox: int) -> torch.Tensor: ...


class CrossEntropySlabLoss:
    """``cross_entropy(logits, target)`` (mean over batch and voxels) in slab form."""

    linear = True

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(_wide(logits), target, reduction="sum").reshape(1)

    def total(self, sums: torch.Tensor, n_vox: int) -> torch.Tensor:
        return sums[0] / n_vox


class DiceCESlabLoss:
    """MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=False)`` (the
    segmentation task's loss; Dice per sample and class with background, smoothing 1e-5,
    then the mean, plus the mean cross-entropy) in slab form: the sums are, per sample and
    class, the intersection, the predicted and the true volume, and the cross-entropy sum."""

    linear = False

    def __init__(self, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> None:
        self.smooth_nr, self.smooth_dr = smooth_nr, smooth_dr

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _wide(logits)
        prob = torch.softmax(logits, dim=1)
        onehot = functional.one_hot(target, logits.shape[1]).movedim(-1, 1).to(prob.dtype)
        dims = tuple(range(2, logits.dim()))
        inter = (prob * onehot).sum(dims)
        ce = functional.cross_entropy(logits, target, reduction="sum").reshape(1)
        return torch.cat(
            [inter.flatten(), prob.sum(dims).flatten(), onehot.sum(dims).flatten(), ce]
        )

    def total(self, sums: torch.Tensor, n_vox: int) -> torch.Tensor:
        inter, pred, true = sums[:-1].reshape(3, -1)
        dice = 1 - (2 * inter + self.smooth_nr) / (true + pred + self.smooth_dr)
        return dice.mean() + sums[-1] / n_vox


def slab_step(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    slab_vox: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    inner_context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    loss_fn: SlabLoss | None = None,
    grad_scale: float = 1.0,
) -> torch.Tensor:
    """Forward and backward of ``loss_fn(net(x), y)`` (default: cross-entropy) with the
    full-resolution stage in slabs; gradients accumulate in the parameters' ``.grad`` as
    ``loss.backward()`` would.

    ``y``: ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` int64. ``autocast`` makes the precision
    context (entered around every computation); ``inner_context`` wraps the inner network's
    forward (e.g. activation offload). A non-linear loss (Dice) costs one more forward pass
    of the stage (its sums first). The gradients are those of ``grad_scale * loss`` (e.g.
    ``1 / accumulation`` steps). Returns the loss, unscaled (a detached scalar).
    """
    loss_fn = loss_fn or CrossEntropySlabLoss()
    if y.dim() == x.dim():
        y = y[:, 0]
    sd = SlabbedDynUNet(net, slab_vox)
    sd.depth = x.shape[2]
    if sd.depth % 2:
        raise ConfigError(f"slab steps need an even number of slices, not {sd.depth}")
    n_vox = y.numel()  # cross_entropy's mean: over batch and voxels
    per_sample = n_vox // y.shape[0]  # voxels per instance-norm statistic
    slabs = sd.slabs()
    none = _Span(x[:, :, :0], 0, 0)  # no u: the encoder's pieces do not read it

    def stats(key: str, u: _Span, st: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return _stats([_slab_stat(sd.conv_out(key, x, u, a, b, st)) for a, b in slabs])

    with torch.no_grad(), autocast():
        st: dict[str, Any] = {}
        st["a"] = stats("a", none, st)
        st["b"] = stats("b", none, st)
        z = torch.cat([sd.z(x, a, b, st) for a, b in slabs], dim=2)
    z_leaf = z.requires_grad_()
    with autocast(), inner_context():
        u = sd.inner(z_leaf)
    u_all = _Span(u.detach(), 0, u.shape[2])
    with torch.no_grad(), autocast():
        st["c"] = stats("c", u_all, st)
        st["d"] = stats("d", u_all, st)
    # The statistics as leaves: the gradient each receives is summed over the slabs.
    leaves = {
        k: (m.clone().requires_grad_(), v.clone().requires_grad_()) for k, (m, v) in st.items()
    }
    grad_u = [torch.zeros_like(u_all.t)]  # a list: emptied once the inner network is done

    def u_leaf(a: int, b: int) -> _Span:
        lo, hi = sd.u_range(a, b)
        return _Span(u_all.t[:, :, lo:hi].detach().requires_grad_(), lo, hi)

    def gather(us: _Span) -> None:
        if us.t.grad is not None:
            grad_u[0][:, :, us.lo : us.hi] += us.t.grad

    def pull(key: str) -> None:
        """Push the gradient that reached statistic ``key`` back through its slabs:
        d mean / d c = 1/N, d var / d c = 2 (c - mean) / N."""
        g_mean, g_var = (t.grad for t in leaves[key])
        mean = st[key][0].reshape(*st[key][0].shape, 1, 1, 1)
        for a, b in slabs:
            us = u_leaf(a, b) if key in "cd" else none
            with autocast():
                c = _wide(sd.conv_out(key, x, us, a, b, leaves))
                phi = torch.zeros((), dtype=c.dtype, device=x.device)
                if g_mean is not None:
                    phi = phi + (c.sum(dim=(2, 3, 4)) * g_mean).sum() / per_sample
                if g_var is not None:
                    dev = ((c - mean) ** 2).sum(dim=(2, 3, 4))
                    phi = phi + (dev * g_var).sum() / per_sample
            if phi.requires_grad:
                phi.backward()  # type: ignore[no-untyped-call]
            gather(us)

    def loss_parts(us: _Span, a: int, b: int) -> torch.Tensor:
        with autocast():
            return loss_fn.parts(sd.logits(x, us, a, b, leaves), y[:, a:b]).double()

    def loss_gradient(sums: torch.Tensor) -> torch.Tensor:
        """d total / d sums at ``sums``."""
        leaf = sums.detach().clone().requires_grad_()
        with torch.enable_grad():
            loss_fn.total(leaf, n_vox).backward()  # type: ignore[no-untyped-call]
        assert leaf.grad is not None
        return leaf.grad * grad_scale

    g_sums = None
    if not loss_fn.linear:  # the sums first (one more forward pass of the stage)
        with torch.no_grad():
            g_sums = loss_gradient(torch.stack([loss_parts(u_all, a, b) for a, b in slabs]).sum(0))
    parts = []
    for a, b in slabs:  # the loss's direct gradients, slab by slab
        us = u_leaf(a, b)
        part = loss_parts(us, a, b)
        if g_sums is None:  # linear: the same gradient at any sums
            g_sums = loss_gradient(torch.zeros_like(part))
        (part * g_sums).sum().backward()  # type: ignore[no-untyped-call]
        parts.append(part.detach())
        gather(us)
    loss = loss_fn.total(torch.stack(parts).sum(0), n_vox).detach()
    pull("d")
    pull("c")
    u.backward(grad_u.pop())  # type: ignore[no-untyped-call]
    del u
    grad_z = z_leaf.grad
    assert grad_z is not None
    for a, b in slabs:
        with autocast():
            zs = sd.z(x, a, b, leaves)
        zs.backward(grad_z[:, :, a // 2 : b // 2].to(zs.dtype))  # type: ignore[no-untyped-call]
    del grad_z, z_leaf, z
    pull("b")
    pull("a")
    return loss.to(_wide(x[:, :, :0]).dtype)
