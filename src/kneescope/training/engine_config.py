"""The training engine's configuration: what every task's training shares."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kneescope.config import FROZEN

ENGINE_KEYS = frozenset(
    {
        "iterations",
        "batch_size",
        "accumulation",
        "lr",
        "weight_decay",
        "schedule",
        "warmup_iterations",
        "clip_grad_norm",
        "precision",
        "checkpointing",
        "ema_decay",
        "early_stopping_patience",
        "validate_every",
        "checkpoint_every",
        "seed",
        "threads",
        "max_minutes",
        "budget",
        "slab_vox",
    }
)
"""Keys of a flat training file that belong to the engine (the rest go to the task)."""


class EngineConfig(BaseModel):
    """How the engine trains, whatever the task.

    Attributes:
        iterations: optimiser steps in total.
        batch_size: samples per micro-step over all ranks (the global batch); ``None``: the
            memory planner's (patch tasks) or the task's default.
        accumulation: micro-steps per optimiser step (gradient accumulation); ``None``: the
            planner's choice, else 1.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        schedule: learning-rate schedule after warm-up: ``"poly"`` (``lr * (1 - t/T)^0.9``),
            ``"cosine"`` (half cosine to 0) or ``"constant"``.
        warmup_iterations: linear warm-up from ``lr / warmup`` to ``lr`` over these steps.
        clip_grad_norm: gradient-norm clipping threshold (L2 over all parameters).
        precision: ``"auto"`` (bf16 autocast where the device runs it natively), ``"bf16"``
            or ``"fp32"``.
        checkpointing: activation checkpointing: ``"auto"`` (the planner's choice, else off),
            ``"off"``, ``"per_block"`` or ``"selective"``.
        ema_decay: keep an exponential moving average of the weights with this decay (e.g.
            0.999); validation and the model file then use the averaged weights. ``None``: off.
        early_stopping_patience: stop when the validation score has not improved for this many
            validations in a row; the model file then holds the best weights. ``None``: off.
        validate_every: iterations between validations.
        checkpoint_every: iterations between checkpoints (resume points).
        seed: seeds initialisation, sampling, augmentation and dropout.
        threads: CPU threads for torch; ``None``: torch's default.
        max_minutes: wall-time budget; when it runs out the run validates, checkpoints and
            writes the model as if the iterations were done (the schedule still follows
            ``iterations``).
        budget: memory budget for the planner, e.g. ``"2GB"``; ``None``: half the free RAM.
        slab_vox: ``> 0``: each step computes the network's full-resolution stage in slabs
            of this many slices (even) along the first axis, exactly
            (:func:`kneescope.memory.slabs.slab_step`; an nnU-Net-style DynUNet and a task
            with a slab form of its loss); ``0``: the plain step.
    """

    model_config = FROZEN

    iterations: int = Field(200, ge=1)
    batch_size: int | None = Field(None, ge=1)
    accumulation: int | None = Field(None, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    warmup_iterations: int = Field(0, ge=0)
    clip_grad_norm: float = Field(12.0, gt=0.0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    checkpointing: Literal["auto", "off", "per_block", "selective"] = "auto"
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)
    early_stopping_patience: int | None = Field(None, ge=1)
    validate_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(25, ge=1)
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0.0)
    budget: str | None = None
    slab_vox: int = Field(0, ge=0)
