"""Track tensor storage allocations op by op, for real or fake tensors.

:class:`AllocationTracker` is a ``TorchDispatchMode``: every tensor an aten op returns is
looked up by its storage; a new storage adds its bytes to the live total, and a weak
reference subtracts them when the storage dies. The peak, and which storages were alive at
the peak, give the peak memory and its breakdown. Works the same under ``FakeTensorMode``
(prediction: nothing is allocated) and on real tensors (measurement). Allocations inside an
op that never leave it (convolution workspaces, allocator rounding) are not seen; the
prediction adds a safety margin for them.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

CATEGORIES = (
    "weights",
    "inputs",
    "gradients",
    "optimizer_state",
    "activations",
    "temporaries",
)
"""Breakdown keys. Activations: tensors made in the forward pass and alive at the peak
(saved for backward, or the output); temporaries: anything else made in backward or the
optimizer step that is neither a gradient nor optimizer state."""


_CONV_OPS = {
    torch.ops.aten.convolution.default,
    torch.ops.aten.convolution_backward.default,
}


def _conv_workspace_bytes(args: tuple[Any, ...], out: Any) -> int:
    """Model of a convolution's internal buffers: one copy of its input and its output.

    Convolution kernels reorder their input and output into blocked layouts or use
    workspaces (oneDNN on CPU, cuDNN on GPU); one extra copy of the first input and the
    first output (for backward: of the output gradient and the forward input) bounds this
    in the measured steps, on CPU (oneDNN) and on an H200 (cuDNN, torch 2.11: docs/memory.md
    §6). Both scale with the patch, never the weights.
    """
    first_out = tree_leaves(out)[0]
    sizes = [
        t.untyped_storage().nbytes()
        for t in (args[0], first_out)
        if isinstance(t, torch.Tensor) and t.dim() > 2
    ]
    return sum(sizes)


class AllocationTracker(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Live-bytes bookkeeping by storage; ``phase`` labels new allocations.

    Attributes:
        current_bytes: bytes of tracked storages alive now.
        peak_bytes: maximum of ``current_bytes`` seen.
    """

    def __init__(self, workspace: bool = True) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.phase = "setup"
        self.current_bytes = 0
        self.peak_bytes = 0
        self._serial = 0
        self._live: dict[int, tuple[int, int, str]] = {}  # cdata -> (serial, bytes, phase)
        self._refs: dict[int, weakref.ref[Any]] = {}
        self._peak_live: list[tuple[int, int, str]] = []
        self._labels: dict[int, str] = {}  # serial -> category
        self.weight_tensors: list[torch.Tensor] = []
        self.workspace = workspace
        self.count_flops = False
        self.flops = 0
        """FLOPs of the ops run while ``count_flops`` (torch's flop formulas; no module hooks,
        which would keep tensors alive and distort the memory being measured)."""
        self.timeline: list[int] = []
        """Live bytes after every allocation (and inside every modelled workspace)."""
        self.untracked = False
        """While true, ops run without being counted (host-side copies of offloaded tensors:
        their storages never enter the live set, so they are never device bytes)."""

    # -- bookkeeping ---------------------------------------------------------------------------
    def _add(self, tensor: torch.Tensor) -> int | None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._live:
            return self._live[key][0]
        nbytes = int(storage.nbytes())
        self._serial += 1
        self._live[key] = (self._serial, nbytes, self.phase)
        self._refs[key] = weakref.ref(storage, functools.partial(self._on_dead, key))
        self.current_bytes += nbytes
        self.timeline.append(self.current_bytes)
        if self.current_bytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes
            self._peak_live = list(self._live.values())
        return self._serial

    def _on_dead(self, key: int, _ref: object) -> None:
        self._free(key)

    def _free(self, key: int) -> None:
        entry = self._live.pop(key, None)
        self._refs.pop(key, None)
        if entry is not None:
            self.current_bytes -= entry[1]

    def register(self, tensors: Iterable[torch.Tensor], category: str) -> None:
        """Count existing tensors (e.g. parameters) and label them ``category``."""
        for t in tensors:
            serial = self._add(t)
            if serial is not None:
                self._labels[serial] = category

    def label(self, tensors: Iterable[torch.Tensor | None], category: str) -> None:
        """Label already-tracked live tensors (e.g. gradients, optimizer state)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                entry = self._live.get(t.untyped_storage()._cdata)
                if entry is not None:
                    self._labels.setdefault(entry[0], category)

    def reset_peak(self) -> None:
        """Start a new peak measurement (and timeline) from the current live set."""
        self.timeline = [self.current_bytes]
        self.peak_bytes = self.current_bytes
        self._peak_live = list(self._live.values())

    def peak_breakdown(self) -> dict[str, int]:
        """Bytes per category among the storages alive at the peak."""
        out = dict.fromkeys(CATEGORIES, 0)
        for serial, nbytes, phase in self._peak_live:
            category = self._labels.get(serial)
            if category is None:
                category = "activations" if phase == "forward" else "temporaries"
            out[category] += nbytes
        return out

    # -- dispatch ------------------------------------------------------------------------------
    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.untracked:
            return out
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._add(leaf)
        if self.count_flops:
            packet = func._overloadpacket
            if packet in flop_registry:
                self.flops += int(flop_registry[packet](*args, **(kwargs or {}), out_val=out))
        if self.workspace and func in _CONV_OPS:
            self._transient(_conv_workspace_bytes(args, out))
        return out

    def _transient(self, nbytes: int) -> None:
        """A buffer that lives only inside the op just run (counts towards the peak only)."""
        self.timeline.append(self.current_bytes + nbytes)
        if self.current_bytes + nbytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes + nbytes
            self._peak_live = [*self._live.values(), (0, nbytes, "workspace")]
