"""One training or inference step, run the same way for prediction and for measurement.

:class:`StepConfig` says what the step does (input shape, batch, precision, optimizer,
checkpointing, offload, mode); :func:`run_steps` runs it on a network under an
:class:`~kneescope.memory.tracker.AllocationTracker`, with real tensors (measurement) or
inside ``FakeTensorMode`` (prediction: no memory is allocated).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field
from torch import nn

from kneescope.config import FROZEN
from kneescope.memory.tracker import AllocationTracker
from kneescope.models.checkpointing import Checkpointing, apply_checkpointing

Precision = Literal["fp32", "bf16", "fp16"]
OptimizerName = Literal["sgd", "adam", "adamw"]
Mode = Literal["train", "infer"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class StepConfig(BaseModel):
    """What one step does. ``input_shape_vox`` is the spatial patch shape (no batch/channel)."""

    model_config = FROZEN

    input_shape_vox: tuple[int, ...]
    batch_size: int = Field(1, ge=1)
    precision: Precision = "fp32"
    optimizer: OptimizerName = "adam"
    foreach: bool = False
    checkpointing: Checkpointing = "off"
    offload: bool = False
    mode: Mode = "train"
    slab_vox: int = Field(0, ge=0)
    """``> 0``: the full-resolution stage of a DynUNet runs in slabs of this many slices along
    the first spatial axis, recomputed in forward and backward, exactly
    (:mod:`kneescope.memory.slabs`); ``0``: the plain step."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Which kernels the step runs on. Both model convolution workspaces the same way (one
    copy of a convolution's input and output inside the op): fitted to oneDNN on CPU and
    confirmed for cuDNN on an H200 (docs/memory.md §6)."""


class StepCounters:
    """Side results of :func:`run_steps`: FLOPs of the last step, bytes offloaded to host."""

    def __init__(self) -> None:
        self.flops = 0
        self.host_offload_bytes = 0


def make_optimizer(step: StepConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer ``step`` names (SGD with momentum 0.99 as nnU-Net, Adam, AdamW)."""
    if step.optimizer == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.99, nesterov=True, foreach=step.foreach)
    if step.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=1e-4, foreach=step.foreach)
    return torch.optim.Adam(params, lr=1e-4, foreach=step.foreach)


@contextlib.contextmanager
def simulated_offload(tracker: AllocationTracker, counters: StepCounters) -> Iterator[None]:
    """``torch.autograd.graph.save_on_cpu`` with the "host" on the untracked side of ``tracker``.

    The same pack/unpack as ``save_on_cpu``, for fake or real tensors on one device: pack
    copies every saved tensor (parameters included) into a new contiguous tensor created
    while ``tracker.untracked`` (host bytes: counted in ``counters.host_offload_bytes``,
    never as device bytes); unpack makes a new tracked contiguous copy (``save_on_cpu``'s
    ``tensor.to(device)``), alive while the node that saved it runs its backward. A tensor
    saved by several nodes is packed, and unpacked, once per node, as by ``save_on_cpu``.
    """

    def pack(t: torch.Tensor) -> torch.Tensor:
        counters.host_offload_bytes += t.numel() * t.element_size()
        was = tracker.untracked
        tracker.untracked = True
        try:
            host = torch.empty(t.size(), dtype=t.dtype, layout=t.layout, device=t.device)
            host.copy_(t)
        finally:
            tracker.untracked = was
        return host

    def unpack(host: torch.Tensor) -> torch.Tensor:
        return host.clone(memory_format=torch.contiguous_format)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def _untracked_save_on_cpu(tracker: AllocationTracker) -> torch.autograd.graph.save_on_cpu:
    """``save_on_cpu(pin_memory=True)`` whose pinned host copies the tracker does not count
    (so the tracked figure of a real CUDA step is device bytes, unpacked copies included)."""
    ctx = torch.autograd.graph.save_on_cpu(pin_memory=True)
    pack = ctx.pack_hook

    def untracked_pack(t: torch.Tensor) -> Any:
        was = tracker.untracked
        tracker.untracked = True
        try:
            return pack(t)
        finally:
            tracker.untracked = was

    ctx.pack_hook = untracked_pack
    return ctx


def run_steps(
    net: nn.Module,
    step: StepConfig,
    classifier: bool,
    out_channels: int,
    in_channels: int,
    tracker: AllocationTracker,
    device: torch.device,
    offload: str = "simulate",
    n_steps: int = 1,
    count_flops: bool = True,
) -> StepCounters:
    """Run ``n_steps`` steady-state steps of ``step`` on ``net`` under ``tracker``.

    Steady state: before the tracked steps, the optimizer state is created (one optimizer
    step on zero gradients), so the peak includes it, as in every step after the first.
    ``offload`` (used when ``step.offload``): ``"simulate"`` (:func:`simulated_offload`:
    prediction, or a real CPU check of it), ``"save_on_cpu"`` (a real CUDA device), ``"none"``
    (ignore: host and device are one). Frees are tracked with
    the garbage collector paused (refcount frees only: deterministic, the worst case).
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(
            net,
            step,
            (classifier, out_channels, in_channels),
            tracker,
            device,
            offload,
            n_steps,
            count_flops,
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _run(
    net: nn.Module,
    step: StepConfig,
    shape_info: tuple[bool, int, int],
    tracker: AllocationTracker,
    device: torch.device,
    offload: str,
    n_steps: int,
    count_flops: bool,
) -> StepCounters:
    classifier, out_channels, in_channels = shape_info
    counters = StepCounters()
    params = [p for p in net.parameters() if p.requires_grad]
    tracker.register(params, "weights")
    tracker.register(list(net.buffers()), "weights")
    tracker.weight_tensors = list(params)
    apply_checkpointing(net, step.checkpointing)
    train = step.mode == "train"
    net.train(train)
    optimizer = make_optimizer(step, params) if train else None
    with tracker:
        if optimizer is not None:
            tracker.phase = "optimizer"
            for p in params:
                p.grad = torch.zeros_like(p)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tracker.label(
                [t for state in optimizer.state.values() for t in state.values()],
                "optimizer_state",
            )
        tracker.phase = "inputs"
        x = torch.randn(step.batch_size, in_channels, *step.input_shape_vox, device=device)
        if classifier:
            y = torch.randint(0, out_channels, (step.batch_size,), device=device)
        else:
            y = torch.randint(
                0, out_channels, (step.batch_size, *step.input_shape_vox), device=device
            )
        tracker.label([x, y], "inputs")
        tracker.reset_peak()
        for i in range(n_steps):
            tracker.count_flops = count_flops and i == 0
            tracker.flops = 0
            _one_step(net, step, optimizer, x, y, tracker, counters, device, offload)
            if tracker.count_flops:
                counters.flops = tracker.flops
            tracker.count_flops = False
    return counters


def _autocast(step: StepConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if step.precision in _DTYPES:
        return torch.autocast(device.type, dtype=_DTYPES[step.precision])
    return contextlib.nullcontext()


def _one_step(
    net: nn.Module,
    step: StepConfig,
    optimizer: torch.optim.Optimizer | None,
    x: torch.Tensor,
    y: torch.Tensor,
    tracker: AllocationTracker,
    counters: StepCounters,
    device: torch.device,
    offload: str,
) -> None:
    autocast = _autocast(step, device)
    if optimizer is None:
        tracker.phase = "forward"
        with torch.no_grad(), autocast:
            net(x)
        return
    optimizer.zero_grad(set_to_none=True)
    offload_ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if step.offload and offload != "none":
        offload_ctx = (
            _untracked_save_on_cpu(tracker)
            if offload == "save_on_cpu"
            else simulated_offload(tracker, counters)
        )
    counters.host_offload_bytes = 0
    tracker.phase = "forward"
    if step.slab_vox:
        from kneescope.memory.slabs import slab_step

        slab_step(
            net, x, y, step.slab_vox, autocast=lambda: _autocast(step, device),
            inner_context=lambda: offload_ctx,
        )  # fmt: skip
        _optimizer_phase(tracker, net, optimizer)
        return
    with autocast, offload_ctx:
        out = net(x)
        if isinstance(out, (list, tuple)):
            out = out[0]
        loss = torch.nn.functional.cross_entropy(out.float(), y)
    tracker.phase = "backward"
    loss.backward()  # type: ignore[no-untyped-call]
    _optimizer_phase(tracker, net, optimizer)


def _optimizer_phase(
    tracker: AllocationTracker, net: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Label the gradients, run the optimiser step and label its state (the step's end)."""
    tracker.label([p.grad for p in net.parameters()], "gradients")
    tracker.phase = "optimizer"
    optimizer.step()
    tracker.label(
        [t for state in optimizer.state.values() for t in state.values()], "optimizer_state"
    )
    tracker.phase = "idle"
