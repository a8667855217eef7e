"""The contract between the training engine and a task (segmentation, classification, ...).

A task supplies what is specific to it: the network, the data (a deterministic batch sampler
and validation cases), the loss, the metrics and the task-specific part of the model file. The
engine (:mod:`kneescope.training.engine`) owns everything else: device and precision, patch and
batch sizes from the memory planner, gradient accumulation, activation checkpointing, the
learning-rate schedule, clipping, exact resume, EMA, early stopping, logging, progress and the
model file.

Determinism contract: ``batch(index, size)`` must return the same tensors for the same
arguments whenever it is called, in any process; the engine draws global batch ``index`` and
slices it per rank, so one rank and N ranks see the same samples. With gradient accumulation
``a`` the engine draws ``batch(iteration * a + micro, size)`` for ``micro`` in ``0..a-1`` and
seeds torch (dropout) per micro-step from the run seed, iteration and micro-step alone.

Optional members (checked with ``isinstance`` against the protocols below, not required):

- :class:`PatchTask` (``patch_request()``, ``use_patch_size(patch)``): a task that trains on
  patches whose size the engine picks with the memory planner (segmentation).
- ``model_spec`` may return a ``"training"`` key: a JSON-serialisable dict the engine moves
  into the model file's ``training`` record (e.g. the task's config and case names).
- ``evaluate_final(network, device) -> Metrics``: used instead of ``evaluate`` for the last
  validation of a run (e.g. add costly metrics such as surface distances only there).
- ``val_size: int``: number of validation cases; ``0`` tells the engine not to call
  ``evaluate`` (no validation, no metrics in the model file). Absent: validation is on.
- ``initialise(network) -> None``: sets the freshly built network's starting weights (e.g.
  from an earlier model, for fine-tuning); called once per session before the checkpoint (if
  any) is loaded, so a resumed run continues from its checkpoint.
- The engine calls ``evaluate`` inside its autocast context (bf16 where native); read
  ``torch.is_autocast_enabled(device.type)`` rather than opening another one.

Training files name their task with ``task = "<name>"``; the name is looked up in the
``kneescope.tasks`` entry-point group, whose entries are :class:`TaskFactory` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from pydantic import BaseModel

from kneescope.models import NetworkConfig
from kneescope.workspace import Workspace


@dataclass(frozen=True)
class TaskBatch:
    """One batch: network inputs ``(B, C, *spatial)`` float32 and targets (``B`` first)."""

    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass(frozen=True)
class Metrics:
    """Validation metrics of one evaluation.

    Attributes:
        score: the one number early stopping and model selection maximise (e.g. mean Dice,
            accuracy, negative mean landmark error in mm).
        values: every metric by name (scalars or per-class lists), JSON-serialisable.
    """

    score: float
    values: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class TrainingTask(Protocol):
    """What a capability gives the training engine.

    Attributes:
        kind: the model-file kind this task writes (``"segmentation"``, ``"classification"``,
            ``"landmarks"``, ...).
        network: the network config (``out_channels`` already set for the task).
        data_fingerprint: hash of the training and validation data (file names, sizes, labels).
        train_size: number of training cases (for logs and the model card).
    """

    kind: str
    network: NetworkConfig
    data_fingerprint: str
    train_size: int

    def batch(self, index: int, size: int) -> TaskBatch:
        """Global batch ``index`` of ``size`` samples, deterministic in (index, size)."""
        ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss, a mean over the batch's samples (so rank slices average exactly)."""
        ...

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        """Metrics on the validation cases (network in eval mode, no gradients)."""
        ...

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        """The task-specific part of the model file (labels or classes, grid, preprocessing)."""
        ...


@dataclass(frozen=True)
class PatchRequest:
    """What a patch-trained task asks of the engine's memory planner.

    Attributes:
        case_shape_vox: spatial shape of a training case as the network sees it (a 2D network
            trained on slices of (I, J, K) volumes: ``(J, K)``).
        patch_size_vox: the task config's fixed patch (network dims), ``None``: the planner's.
        default_patch_size_vox: the patch used when no planner is available.
        default_batch_size: the batch used when neither the config nor a planner gives one.
    """

    case_shape_vox: tuple[int, ...]
    patch_size_vox: tuple[int, ...] | None
    default_patch_size_vox: tuple[int, ...]
    default_batch_size: int


@runtime_checkable
class PatchTask(Protocol):
    """Optional: a task whose patch size the engine chooses (memory planner or defaults).

    The engine calls ``patch_request()`` once, then ``use_patch_size(patch)`` before the first
    ``batch`` call, with a patch in network dims (2D: ``(h, w)``).
    """

    def patch_request(self) -> PatchRequest: ...

    def use_patch_size(self, patch_size_vox: tuple[int, ...]) -> None: ...


@runtime_checkable
class TaskFactory(Protocol):
    """What an entry point of the ``kneescope.tasks`` group names (a class or an instance).

    Attributes:
        config_type: the task's frozen pydantic config: every key of a training file that is
            not an engine key (:class:`~kneescope.training.engine_config.EngineConfig`), not
            ``task`` and not ``name`` (the model name, ``WS/models/<name>.pt``).
    """

    config_type: type[BaseModel]

    def build(
        self, config: Any, *, workspace: Workspace, seed: int, base_dir: Path
    ) -> TrainingTask:
        """The task for ``config`` (an instance of ``config_type``): data read and prepared.

        ``seed`` is the run seed (splits, sampling); ``base_dir`` resolves relative paths
        (the training file's folder).
        """
        ...
