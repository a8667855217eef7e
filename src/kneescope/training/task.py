"""The contract between the training engine and a task (segmentation, classification, ...).

A task supplies what is specific to it: the network, the data (a deterministic batch sampler
and validation cases), the loss, the metrics and the task-specific part of the model file. The
engine (:mod:`kneescope.training.engine`) owns everything else: device and precision, patch and
batch sizes from the memory planner, gradient accumulation, activation checkpointing, the
learning-rate schedule, clipping, exact resume, EMA, early stopping, logging, progress and the
model file.

Determinism contract: ``batch(index, size)`` must return the same tensors for the same
arguments whenever it is called, in any process; the engine draws global batch ``index`` and
slices it per rank, so one rank and N ranks see the same samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from kneescope.models import NetworkConfig


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
