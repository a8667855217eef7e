"""Activation checkpointing for registry networks, without changing their state dicts.

``per_block``: each block (a VGG stage; a MONAI ``Convolution``/``ResidualUnit``, U-Net basic,
residual or up block, ``TwoConv``, ``Down``, ``UpCat``, a ResNet basic or bottleneck block)
keeps only its inputs during the forward pass and recomputes its inside during backward.
``selective``: the same blocks, but convolution outputs are saved and only the cheap
element-wise ops (norms, activations, pooling) are recomputed: less memory saved, far less
recomputation.
The blocks' ``forward`` is wrapped in place, so parameter names and model files are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

from kneescope.models.vgg_classifier import VGGStage

Checkpointing = Literal["off", "per_block", "selective"]

_SAVED_OPS = {
    torch.ops.aten.convolution.default,
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
}


def _block_types() -> tuple[type[nn.Module], ...]:
    from monai.networks.blocks.convolutions import Convolution, ResidualUnit
    from monai.networks.blocks.dynunet_block import UnetBasicBlock, UnetResBlock, UnetUpBlock
    from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
    from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck

    return (
        VGGStage,
        ResNetBlock,
        ResNetBottleneck,
        ResidualUnit,
        Convolution,
        UnetBasicBlock,
        UnetResBlock,
        UnetUpBlock,
        TwoConv,
        Down,
        UpCat,
    )


def checkpoint_blocks(net: nn.Module) -> Iterator[nn.Module]:
    """The outermost modules of ``net`` that are checkpointable blocks, in module order."""
    types = _block_types()

    def walk(module: nn.Module) -> Iterator[nn.Module]:
        for child in module.children():
            if isinstance(child, types):
                yield child
            else:
                yield from walk(child)

    yield from walk(net)


def _selective_policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    if op in _SAVED_OPS:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def _selective_context() -> Any:
    return create_selective_checkpoint_contexts(_selective_policy)  # type: ignore[no-untyped-call]


def _wrap(forward: Callable[..., Any], selective: bool) -> Callable[..., Any]:
    @functools.wraps(forward)
    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        if selective:
            return checkpoint(
                forward, *args, use_reentrant=False, context_fn=_selective_context, **kwargs
            )
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return checkpointed


def apply_checkpointing(net: nn.Module, mode: Checkpointing) -> int:
    """Wrap the blocks of ``net`` in activation checkpointing, in place.

    Returns the number of blocks wrapped (0 for ``"off"``). Applying twice is a no-op.
    """
    if mode == "off":
        return 0
    count = 0
    for block in checkpoint_blocks(net):
        if getattr(block, "_kneescope_checkpointing", None) is not None:
            continue
        # Instance attribute: nn.Module.__call__ calls self.forward, state_dict is unchanged.
        if mode == "selective":
            # A saved convolution output must not be overwritten by an in-place activation.
            for sub in block.modules():
                if getattr(sub, "inplace", False) is True:
                    setattr(sub, "inplace", False)  # noqa: B010
        block.forward = _wrap(block.forward, selective=mode == "selective")  # type: ignore[method-assign]
        block._kneescope_checkpointing = mode  # type: ignore[assignment]
        count += 1
    return count
