"""The training engine: one loop for every task (segmentation, classification, landmarks, ...).

A task (:class:`~kneescope.training.task.TrainingTask`) gives the network config, the data,
the loss and the metrics; :func:`fit` does the rest: device and precision (bf16 autocast where
native), patch and batch sizes (config, memory planner or defaults), gradient accumulation,
activation checkpointing, the learning-rate schedule, gradient clipping, checkpoints with exact
resume, an optional weight average (EMA), optional early stopping, logging, progress callbacks
and the model file.

Exact resume: every micro-step's randomness (sampling, augmentation, dropout) is derived from
the run seed, the iteration and the micro-step alone, and a checkpoint holds the weights, the
optimiser, EMA and early-stopping states and the history. A run stopped and resumed ends with
the weights the uninterrupted run would have had.

Data parallel (``world.size > 1``): every rank draws the same global batch and keeps its slice,
the network is wrapped in DistributedDataParallel (gradients averaged), rank 0 validates and
writes checkpoints and the model file, and every rank resumes from the same checkpoint.

Slabs (``EngineConfig.slab_vox > 0``, one process): each micro-step is
:func:`kneescope.memory.slabs.slab_step` (forward, loss and backward with the network's
full-resolution stage computed in slabs of ``slab_vox`` slices, the same loss and gradients
as the plain step within round-off) instead of ``network(inputs)`` and ``loss.backward()``;
the optimiser step, clipping, accumulation and the rest are unchanged. It needs an
nnU-Net-style DynUNet and a task whose loss has a slab form: the task's optional
``slab_loss()`` returns it (:class:`kneescope.memory.slabs.SlabLoss`, e.g. the segmentation
task's Dice + cross-entropy). Anything else is refused with a ConfigError before training.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kneescope.config import config_hash
from kneescope.errors import ConfigError
from kneescope.models import build_network
from kneescope.models.model_file import ModelFile, save_model_file
from kneescope.training.checkpoint import (
    CHECKPOINT_NAME,
    TrainingState,
    load_checkpoint,
    save_checkpoint,
)
from kneescope.training.distributed import (
    SINGLE,
    World,
    all_reduce_max,
    all_reduce_mean,
    barrier,
    broadcast_object,
)
from kneescope.training.early_stopping import EarlyStopping
from kneescope.training.ema import WeightAverage
from kneescope.training.engine_config import EngineConfig
from kneescope.training.precision import autocast, autocast_dtype
from kneescope.training.progress import FitProgress, ProgressCallback
from kneescope.training.schedule import learning_rate
from kneescope.training.step_plan import StepPlan, plan_step
from kneescope.training.task import Metrics, PatchTask, TrainingTask

if TYPE_CHECKING:
    from kneescope.memory.slabs import SlabLoss

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What a training session did.

    Attributes:
        model_path: the model file written (``None``: not finished, not asked, or not rank 0).
        model: the model file's contents (also when not written).
        history: one row per iteration: ``iteration``, ``loss``; at validations also
            ``score`` and the task's metric values.
        metrics: the final validation metrics (``None``: no validation or not finished).
        iterations_run: iterations done in this session.
        resumed_from: the iteration this session started at (0: a fresh run).
        seconds: wall time of this session's training.
        plan: the step plan (patch, batch, accumulation, checkpointing, source).
        stopped_early: early stopping ended the run.
    """

    model_path: Path | None
    model: ModelFile
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: Metrics | None = None
    iterations_run: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    plan: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False


def fit(
    task: TrainingTask,
    config: EngineConfig,
    *,
    run_dir: Path,
    model_path: Path | None,
    world: World | None = None,
    progress: ProgressCallback | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train ``task``; resume from ``run_dir/checkpoint.pt`` if it belongs to this run.

    Args:
        task: what to train.
        config: how to train.
        run_dir: where checkpoints go.
        model_path: where the model file is written when training ends (``None``: not
            written).
        world: this process's rank among the data-parallel ranks (``None``: one process).
        progress: called after every iteration (on every rank).
        stop_after: stop (after checkpointing) once this many iterations are done in total;
            for tests and for splitting a long run into sessions.
    """
    session = _Session.start(task, config, run_dir, world or SINGLE)
    session.train(stop_after, progress)
    return session.finish(model_path)


@dataclass
class _Session:
    """The state of one training session (one process)."""

    task: TrainingTask
    config: EngineConfig
    world: World
    device: torch.device
    dtype: torch.dtype | None
    plan: StepPlan
    model: torch.nn.Module
    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ckpt_path: Path
    run_key: str
    state: TrainingState
    ema: WeightAverage | None = None
    stopper: EarlyStopping | None = None
    slab_loss: SlabLoss | None = None
    metrics: Metrics | None = None
    metrics_at: int = -1
    end: int = 0
    resumed_from: int = 0
    stopped_early: bool = False
    budget_hit: bool = False
    t0: float = 0.0
    seconds: float = 0.0

    @classmethod
    def start(
        cls, task: TrainingTask, config: EngineConfig, run_dir: Path, world: World
    ) -> _Session:
        """Plan the step, build the network and optimiser, resume from a checkpoint."""
        device = world.device()
        if config.threads is not None and device.type == "cpu":
            torch.set_num_threads(config.threads)
        plan = plan_step(task, config, world.size)
        if plan.patch_size_vox is not None and isinstance(task, PatchTask):
            task.use_patch_size(plan.patch_size_vox)
        world.shard(plan.batch_size)  # raises when the batch does not split over the ranks
        torch.manual_seed(config.seed)
        model = build_network(task.network)
        initialise = getattr(task, "initialise", None)
        if callable(initialise):
            initialise(model)  # starting weights (fine-tuning); a checkpoint overrides them
        model = model.to(device)
        slab_loss = _slab_loss(task, model, plan, world) if plan.slab_vox else None
        if plan.checkpointing != "off":
            from kneescope.models.checkpointing import apply_checkpointing

            apply_checkpointing(model, plan.checkpointing)  # type: ignore[arg-type]
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        session = cls(
            task=task,
            config=config,
            world=world,
            device=device,
            dtype=autocast_dtype(config.precision, device),
            plan=plan,
            model=model,
            network=_data_parallel(model, world),
            optimizer=optimizer,
            ckpt_path=run_dir / CHECKPOINT_NAME,
            run_key=_run_key(task, config, plan),
            state=TrainingState(),
            slab_loss=slab_loss,
        )
        session.resume(run_dir)
        return session

    def resume(self, run_dir: Path) -> None:
        """Load the checkpoint (every rank the same one) and the EMA/early-stopping states."""
        if self.world.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        barrier(self.world)
        loaded = load_checkpoint(self.ckpt_path, self.run_key, self.model, self.optimizer)
        self.state = loaded or TrainingState()
        if self.config.ema_decay is not None:
            self.ema = WeightAverage(self.model, self.config.ema_decay)
            if self.state.ema is not None:
                self.ema.load_state_dict(self.state.ema)
        if self.config.early_stopping_patience is not None:
            self.stopper = EarlyStopping(self.config.early_stopping_patience)
            if self.state.early_stopping is not None:
                self.stopper.load_state_dict(self.state.early_stopping)
        self.resumed_from = self.state.iteration
        self.stopped_early = self.state.stopped_early

    def train(self, stop_after: int | None, progress: ProgressCallback | None) -> None:
        """Iterations from the resume point to the end (or ``stop_after``, the time budget,
        early stopping), with validations and checkpoints."""
        total = self.config.iterations
        self.end = total if stop_after is None else min(total, stop_after)
        if self.stopped_early:  # an early-stopped run, run again: nothing left to train
            self.end = self.resumed_from
        self.t0 = time.perf_counter()
        self._log_start()
        last_score = _last_score(self.state.history)
        for it in range(self.resumed_from, self.end):
            if self._out_of_time(it):
                break
            row: dict[str, Any] = {"iteration": it + 1, "loss": self.step(it)}
            done = it + 1
            if self._validates(done):
                metrics = self.validate(done, final=done == total)
                row["score"] = last_score = metrics.score
                row.update(metrics.values)
            self.state.history.append(row)
            self.state.iteration = done
            if self.stopped_early:
                self.end = done
                self.state.stopped_early = True
            if done % self.config.checkpoint_every == 0 or done == self.end:
                self.checkpoint()
            if progress is not None:
                elapsed = time.perf_counter() - self.t0
                eta = elapsed / max(1, done - self.resumed_from) * (total - done)
                progress(FitProgress(done, total, row["loss"], last_score, elapsed, eta))
            if self.stopped_early:
                break
        self.seconds = time.perf_counter() - self.t0

    def step(self, it: int) -> float:
        """One optimiser step (``accumulation`` micro-steps); the loss, mean over ranks."""
        cfg, plan = self.config, self.plan
        self.network.train()
        lr = learning_rate(cfg.schedule, it, cfg.iterations, cfg.lr, cfg.warmup_iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        lo, hi = self.world.shard(plan.batch_size)
        loss_value = 0.0
        for micro in range(plan.accumulation):
            torch.manual_seed(cfg.seed * 1_000_003 + it * 101 + micro)
            batch = self.task.batch(it * plan.accumulation + micro, plan.batch_size)
            inputs = batch.inputs[lo:hi].to(self.device)
            targets = batch.targets[lo:hi].to(self.device)
            if plan.slab_vox:
                loss_value += self._slab_micro_step(inputs, targets)
                continue
            with self._sync_gradients(micro == plan.accumulation - 1):
                with autocast(self.device, self.dtype):
                    outputs = self.network(inputs)
                    if isinstance(outputs, list | tuple):
                        outputs = outputs[0]  # deep supervision: the full-resolution head
                loss = self.task.loss(outputs.float(), targets) / plan.accumulation
                loss.backward()  # type: ignore[no-untyped-call]
            loss_value += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.clip_grad_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return all_reduce_mean(loss_value, self.world)

    def _slab_micro_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Forward, loss and backward of one micro-step with the full-resolution stage in
        slabs; gradients of ``loss / accumulation`` added to ``.grad``; the loss's share."""
        from kneescope.memory.slabs import slab_step

        accumulation = self.plan.accumulation
        loss = slab_step(
            self.model,
            inputs,
            targets,
            self.plan.slab_vox,
            autocast=lambda: autocast(self.device, self.dtype),
            loss_fn=self.slab_loss,
            grad_scale=1.0 / accumulation,
        )
        return float(loss) / accumulation

    def _sync_gradients(self, last_micro_step: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP averages gradients over the ranks on the last micro-step only."""
        if last_micro_step or not self.world.is_distributed:
            return contextlib.nullcontext()
        no_sync: Any = getattr(self.network, "no_sync")  # noqa: B009 (DDP only)
        return no_sync()  # type: ignore[no-any-return]

    def validate(self, done: int, *, final: bool = False) -> Metrics:
        """Evaluate (rank 0; the EMA weights when on) and share the metrics with every rank;
        feeds early stopping. ``final``: the task's ``evaluate_final`` when it has one."""
        metrics: Metrics | None = None
        if self.world.is_main:
            metrics = self._evaluate(final)
        metrics = broadcast_object(metrics, self.world)
        assert metrics is not None
        self.metrics, self.metrics_at = metrics, done
        log.info("iteration %d: validation score %.4f", done, metrics.score)
        if self.stopper is not None:
            weights = self._final_weights(use_best=False)
            stop = self.stopper.observe(metrics, done, weights)
            if stop:
                log.info(
                    "early stopping after %d iterations: no better score for %d validations "
                    "(best %.4f at iteration %d)",
                    done,
                    self.stopper.patience,
                    self.stopper.best_score,
                    self.stopper.best_iteration,
                )
                self.stopped_early = True
        return metrics

    def _evaluate(self, final: bool) -> Metrics:
        saved = None
        if self.ema is not None:
            saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.ema.averaged_state(self.model))
        try:
            with autocast(self.device, self.dtype):
                evaluate = getattr(self.task, "evaluate_final", None) if final else None
                if evaluate is None:
                    return self.task.evaluate(self.model, self.device)
                result: Metrics = evaluate(self.model, self.device)
                return result
        finally:
            if saved is not None:
                self.model.load_state_dict(saved)

    def checkpoint(self) -> None:
        """Rank 0 writes the checkpoint; every rank waits for it."""
        if self.world.is_main:
            self.state.ema = self.ema.state_dict() if self.ema is not None else None
            stopper = self.stopper
            self.state.early_stopping = stopper.state_dict() if stopper is not None else None
            save_checkpoint(self.ckpt_path, self.run_key, self.model, self.optimizer, self.state)
        barrier(self.world)

    def finish(self, model_path: Path | None) -> FitResult:
        """Final metrics and the model file (when the run is done; rank 0 writes it)."""
        finished = self.end == self.config.iterations or self.budget_hit or self.stopped_early
        done = self.state.iteration
        if finished and _has_validation(self.task) and self.metrics_at != done:
            self.validate(done, final=True)
        metrics = self.metrics if finished else None
        best = self.stopper is not None and self.stopper.best_iteration > 0
        if best and self.stopper is not None:
            metrics = self.stopper.best_metrics()
        model = self._model_file(metrics, done, use_best=best)
        written = None
        if model_path is not None and finished and self.world.is_main:
            written = save_model_file(model, model_path)
        barrier(self.world)
        return FitResult(
            model_path=written,
            model=model,
            history=self.state.history,
            metrics=metrics,
            iterations_run=done - self.resumed_from,
            resumed_from=self.resumed_from,
            seconds=self.seconds,
            plan=self.plan.as_dict(),
            stopped_early=self.stopped_early,
        )

    def _model_file(self, metrics: Metrics | None, done: int, *, use_best: bool) -> ModelFile:
        spec = dict(self.task.model_spec(metrics))
        record = {
            **dict(spec.pop("training", None) or {}),
            "engine": self.config.model_dump(mode="json"),
            "plan": self.plan.as_dict(),
            "iterations": done,
            "train_size": self.task.train_size,
            "world_size": self.world.size,
            "stopped_early": self.stopped_early,
            "seconds_this_session": self.seconds,
        }
        return ModelFile(
            kind=self.task.kind,
            network=self.task.network,
            spec=spec,
            state_dict=self._final_weights(use_best=use_best),
            data_fingerprint=self.task.data_fingerprint,
            metrics=None if metrics is None else _metrics_dict(metrics),
            training=record,
        )

    def _final_weights(self, *, use_best: bool) -> dict[str, torch.Tensor]:
        """CPU weights for the model file: the best (early stopping), the average (EMA) or
        the current ones."""
        if use_best and self.stopper is not None and self.stopper.best_state:
            return dict(self.stopper.best_state)
        if self.ema is not None:
            state = self.ema.averaged_state(self.model)
        else:
            state = self.model.state_dict()
        return {k: v.detach().cpu() for k, v in state.items()}

    def _validates(self, done: int) -> bool:
        every = done % self.config.validate_every == 0 or done == self.config.iterations
        return every and _has_validation(self.task)

    def _out_of_time(self, it: int) -> bool:
        """True (on every rank) once ``max_minutes`` is used up; checkpoints first."""
        if self.config.max_minutes is None:
            return False
        late = time.perf_counter() - self.t0 > 60.0 * self.config.max_minutes
        if all_reduce_max(1.0 if late else 0.0, self.world) < 1.0:
            return False
        log.info("time budget of %.1f min used after %d iterations", self.config.max_minutes, it)
        self.budget_hit = True
        self.end = it
        self.checkpoint()
        return True

    def _log_start(self) -> None:
        plan = self.plan
        log.info(
            "training %s %s: patch %s batch %d x %d (%s), %d iterations, %s, %d rank(s)%s%s",
            self.task.kind,
            self.task.network.name,
            plan.patch_size_vox,
            plan.batch_size,
            plan.accumulation,
            plan.source,
            self.config.iterations,
            "bf16" if self.dtype is not None else "fp32",
            self.world.size,
            f", full-resolution stage in slabs of {plan.slab_vox}" if plan.slab_vox else "",
            f", resuming at {self.resumed_from}" if self.resumed_from else "",
        )


def _slab_loss(
    task: TrainingTask, model: torch.nn.Module, plan: StepPlan, world: World
) -> SlabLoss:
    """The task's loss in slab form, after checking that the slab step can run this network
    exactly here. Raises ConfigError (one line) otherwise."""
    from kneescope.memory.slabs import check_slab_network

    undo = "; set slab_vox = 0 for the plain step"
    if world.is_distributed:
        raise ConfigError(
            f"slab_vox = {plan.slab_vox} runs in one process only (the slab step does not "
            f"exchange gradients between ranks){undo}"
        )
    try:
        check_slab_network(model, plan.slab_vox)
    except ConfigError as exc:
        raise ConfigError(f"slab_vox = {plan.slab_vox}: {exc}{undo}") from None
    make = getattr(task, "slab_loss", None)
    if not callable(make):
        raise ConfigError(
            f"slab_vox = {plan.slab_vox}: the {task.kind} task's loss has no slab form "
            f"(a task's slab_loss()){undo}"
        )
    loss: SlabLoss = make()
    return loss


def _data_parallel(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when there is more than one rank.

    Batch normalisation: on GPUs its statistics are synchronised over the ranks
    (SyncBatchNorm, in place: the parameters stay the same objects); on CPU (gloo has no
    SyncBatchNorm) each rank normalises with its own share of the batch, said in the log."""
    if not world.is_distributed:
        return model
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.parallel import DistributedDataParallel

    if any(isinstance(m, _BatchNorm) for m in model.modules()):
        if world.backend == "nccl":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        elif world.is_main:
            log.warning(
                "batch normalisation on %d CPU ranks: each rank normalises with its share of "
                "the batch, so the losses differ from one process's",
                world.size,
            )
    ids = [world.device().index] if world.backend == "nccl" else None  # the rank's GPU
    return DistributedDataParallel(model, device_ids=ids)


def _run_key(task: TrainingTask, config: EngineConfig, plan: StepPlan) -> str:
    """What a checkpoint must match to be resumed: the task's description, the data, the
    engine settings that change the numbers, and the step plan."""
    import hashlib

    engine = config.model_copy(update={"threads": None, "max_minutes": None})
    # a plain run keeps the key it had before slabs existed
    engine_key = config_hash(engine, exclude=None if config.slab_vox else {"slab_vox"})
    spec = json.dumps(task.model_spec(None), sort_keys=True, default=str)
    parts = f"{task.kind}|{spec}|{json.dumps(plan.as_dict(), sort_keys=True)}"
    digest = hashlib.sha256(parts.encode()).hexdigest()[:16]
    return f"{engine_key}-{task.data_fingerprint}-{digest}"


def _has_validation(task: TrainingTask) -> bool:
    """Tasks may set ``val_size = 0`` to say they have nothing to validate on."""
    return int(getattr(task, "val_size", 1)) > 0


def _last_score(history: list[dict[str, Any]]) -> float:
    return next((float(h["score"]) for h in reversed(history) if "score" in h), math.nan)


def _metrics_dict(metrics: Metrics) -> dict[str, Any]:
    return {"score": metrics.score, "values": dict(metrics.values)}
