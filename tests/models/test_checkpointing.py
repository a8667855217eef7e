"""Activation checkpointing: same gradients, fewer saved activations, unchanged state dict."""

from __future__ import annotations

import pytest
import torch

from kneescope.models import build_network, preset
from kneescope.models.checkpointing import apply_checkpointing, checkpoint_blocks


def _grads(name: str, mode: str, shape: tuple[int, ...]) -> tuple[list[torch.Tensor], int]:
    torch.manual_seed(0)
    net = build_network(preset(name))
    keys = list(net.state_dict())
    wrapped = apply_checkpointing(net, mode)  # type: ignore[arg-type]
    assert (wrapped > 0) == (mode != "off")
    assert list(net.state_dict()) == keys  # model files unchanged
    assert apply_checkpointing(net, mode) == 0  # type: ignore[arg-type]  # idempotent
    torch.manual_seed(1)
    x = torch.randn(2, 1, *shape)
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x)
    out.float().square().mean().backward()
    return [p.grad.clone() for p in net.parameters() if p.grad is not None], saved


@pytest.mark.parametrize(
    ("name", "shape"), [("unet2d-small", (32, 32)), ("unet3d-small", (32, 32, 32))]
)
def test_checkpointing_keeps_gradients_and_saves_less(name: str, shape: tuple[int, ...]) -> None:
    ref, saved_off = _grads(name, "off", shape)
    for mode in ("per_block", "selective"):
        grads, saved = _grads(name, mode, shape)
        assert len(grads) == len(ref)
        for a, b in zip(grads, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert saved < saved_off


def test_blocks_found_in_every_segmentation_preset() -> None:
    for name in ("unet2d-small", "unet3d-small", "basic-unet3d", "unet3d-nnunet"):
        with torch.device("meta"):
            net = build_network(preset(name))
        assert len(list(checkpoint_blocks(net))) >= 5
