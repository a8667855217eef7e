"""The training loop: planned patches, DiceCE loss, AMP, checkpoints and exact resume.

Every iteration's randomness (patch choice, augmentation, dropout) is derived from the run seed
and the iteration number alone, and a checkpoint holds the weights, the optimiser state and
the history. A run resumed from a checkpoint therefore continues exactly where it stopped and
ends with the weights the uninterrupted run would have had.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kneescope.config import config_hash
from kneescope.errors import ConfigError, ModelError
from kneescope.models import NetworkConfig, build_network, divisor, preset
from kneescope.training.config import TrainConfig
from kneescope.training.data import Case, fingerprint, scheme_for
from kneescope.training.validation import validate
from kneescope.transforms.model_file import ModelSpec, SegmentationModel, save_model
from kneescope.transforms.orientation import left_right_axis
from kneescope.transforms.patches import PatchSampler, default_class_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainProgress:
    """What a progress callback receives after each iteration.

    Attributes:
        iteration: iterations done (1-based).
        total: iterations planned.
        loss: this iteration's loss.
        dice: mean validation Dice over structures at the last validation (NaN before one).
        elapsed_s: seconds since this process started training.
        eta_s: estimated seconds to the end.
    """

    iteration: int
    total: int
    loss: float
    dice: float
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class TrainPlan:
    """How the training step runs (from the memory planner or the config)."""

    patch_size_vox: tuple[int, int, int]
    batch_size: int
    accumulation: int = 1
    checkpointing: str = "off"
    source: str = "config"
    predicted_bytes: int | None = None


@dataclass
class TrainResult:
    """The trained model, the history and where things were written."""

    model: SegmentationModel
    history: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    iterations_run: int = 0
    resumed_from: int = 0
    model_path: Path | None = None


ProgressCallback = Callable[[TrainProgress], None]


def resolve_network(config: TrainConfig, classes: int) -> NetworkConfig:
    """The network config with ``out_channels`` set to the class count."""
    base = preset(config.network) if isinstance(config.network, str) else config.network
    want = 2 if config.mode == "2d" else 3
    if base.spatial_dims != want:
        raise ConfigError(
            f"network {config.network if isinstance(config.network, str) else base.name} is "
            f"{base.spatial_dims}D but mode is {config.mode}; pick a {want}D preset"
        )
    return NetworkConfig.model_validate({**base.model_dump(), "out_channels": classes})


def plan_step(config: TrainConfig, network: NetworkConfig, case_shape: Sequence[int]) -> TrainPlan:
    """Patch and batch size: the config's if given, else the memory planner's (else defaults)."""
    div = divisor(network)
    if config.patch_size_vox is not None and config.batch_size is not None:
        return TrainPlan(config.patch_size_vox, config.batch_size)
    planned = _ask_planner(config, network, case_shape)
    if planned is not None:
        patch = config.patch_size_vox or planned.patch_size_vox
        batch = config.batch_size or planned.batch_size
        return TrainPlan(
            patch,
            batch,
            planned.accumulation,
            planned.checkpointing,
            "planner",
            planned.predicted_bytes,
        )
    if config.mode == "2d":
        side = [_fit(n, 128, d) for n, d in zip(case_shape[1:], div, strict=True)]
        patch = config.patch_size_vox or (1, side[0], side[1])
        return TrainPlan(patch, config.batch_size or 8, source="default")
    sides = [_fit(n, 64, d) for n, d in zip(case_shape, div, strict=True)]
    patch = config.patch_size_vox or (sides[0], sides[1], sides[2])
    return TrainPlan(patch, config.batch_size or 2, source="default")


def _fit(length: int, want: int, div: int) -> int:
    """``want`` rounded down to the divisor, but at least one divisor and at most the axis."""
    size = min(want, max(div, (length // div) * div))
    return max(div, (size // div) * div)


def _ask_planner(
    config: TrainConfig, network: NetworkConfig, case_shape: Sequence[int]
) -> TrainPlan | None:
    """The memory planner's best configuration for a training step within the budget.

    The planner (:func:`kneescope.memory.planner.plan_training`) is looked up at run time so
    that training still works, with default sizes, in a build without it.
    """
    import importlib

    try:
        plan_training = importlib.import_module("kneescope.memory.planner").plan_training
    except (ImportError, AttributeError):
        return None
    shape = tuple(int(n) for n in case_shape)
    if config.mode == "2d":
        shape = shape[1:]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plan = plan_training(
        network,
        shape,
        None,
        _budget_bytes(config.budget),
        optimizer="adamw",
        device=device,
        effective_batch=config.batch_size or (8 if config.mode == "2d" else 2),
    )
    best = plan.best  # raises ResourceError when nothing fits
    patch = tuple(int(p) for p in best.patch_size)
    if config.mode == "2d":
        patch = (1, *patch)
    return TrainPlan(
        (patch[0], patch[1], patch[2]),
        int(best.batch_size),
        int(best.accumulation),
        str(best.checkpointing),
        "planner",
        int(best.required_bytes),
    )


def _budget_bytes(budget: str | None) -> int:
    if budget is None:
        import psutil

        return int(psutil.virtual_memory().available * 0.5)
    text = budget.strip().upper().replace(" ", "")
    units = {"TB": 1e12, "GB": 1e9, "MB": 1e6, "KB": 1e3, "B": 1.0}
    for unit, factor in units.items():
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * factor)
            except ValueError:
                break
    raise ConfigError(f"budget {budget!r} not understood; write e.g. 2GB or 512MB")


def train(
    config: TrainConfig,
    train_cases: Sequence[Case],
    val_cases: Sequence[Case],
    *,
    spacing_mm: tuple[float, float, float],
    orientation: str,
    run_dir: Path,
    side_canonical: bool = False,
    model_path: Path | None = None,
    progress: ProgressCallback | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a segmentation network; resume from ``run_dir/checkpoint.pt`` if it matches.

    Args:
        config: the training configuration.
        train_cases, val_cases: prepared cases (same grid conventions).
        spacing_mm, orientation: the working grid, recorded in the model file.
        side_canonical: the cases show right-knee anatomy (left knees mirrored); no
            left-right flips are then used, and the model file records it.
        run_dir: where checkpoints go.
        model_path: where the model file is written at the end (``None``: not written).
        progress: called after every iteration.
        stop_after: stop (after checkpointing) once this many iterations are done; for tests
            and for splitting a long run into sessions.
    """
    if not train_cases:
        raise ConfigError("no training cases; add image/label pairs or lower val_fraction")
    scheme = scheme_for(config.labels)
    classes = len(scheme.labels) + 1
    net_config = resolve_network(config, classes)
    plan = plan_step(config, net_config, train_cases[0].image.shape)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.threads is not None and device.type == "cpu":
        torch.set_num_threads(config.threads)
    autocast_dtype = _autocast_dtype(config, device)
    data_fp = fingerprint([*train_cases, *val_cases])
    run_key = f"{config_hash(config)}-{data_fp}"

    torch.manual_seed(config.seed)
    network = build_network(net_config).to(device)
    if plan.checkpointing != "off":
        network = _with_checkpointing(network, plan.checkpointing)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    from monai.losses.dice import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=False)
    weights = list(
        config.class_weights or default_class_weights([c.labels for c in train_cases], classes)
    )
    if len(weights) != classes:
        raise ConfigError(f"class_weights needs {classes} values, got {len(weights)}")
    sampler = PatchSampler(
        images=[c.image for c in train_cases],
        labels=[c.labels for c in train_cases],
        patch_size_vox=plan.patch_size_vox,
        classes=classes,
        class_weights=weights,
        mode=config.mode,
        augment=config.augment,
        seed=config.seed,
        flip_axis=None if side_canonical else left_right_axis(orientation),
    )
    roi = config.roi_size_vox or plan.patch_size_vox

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    history: list[dict[str, Any]] = []
    start = 0
    if ckpt_path.exists():
        start, history = _resume(ckpt_path, run_key, network, optimizer)
    resumed_from = start
    last_dice = next((h["dice_mean"] for h in reversed(history) if "dice_mean" in h), float("nan"))
    t0 = time.perf_counter()
    total = config.iterations
    end = total if stop_after is None else min(total, stop_after)
    log.info(
        "training %s %s: patch %s batch %d (%s), %d iterations, %s",
        config.mode,
        net_config.name,
        plan.patch_size_vox,
        plan.batch_size,
        plan.source,
        total,
        "bf16" if autocast_dtype is not None else "fp32",
    )
    deadline = None if config.max_minutes is None else t0 + 60.0 * config.max_minutes
    budget_hit = False
    for it in range(start, end):
        if deadline is not None and time.perf_counter() > deadline:
            log.info("time budget of %.1f min used after %d iterations", config.max_minutes, it)
            budget_hit = True
            end = it
            _checkpoint(ckpt_path, run_key, it, network, optimizer, history)
            break
        network.train()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * (1.0 - it / total) ** 0.9
        optimizer.zero_grad(set_to_none=True)
        loss_value = 0.0
        for micro in range(plan.accumulation):
            torch.manual_seed(config.seed * 1_000_003 + it * 101 + micro)
            image, label = sampler.batch(it * plan.accumulation + micro, plan.batch_size)
            image, label = image.to(device), label.to(device)
            with _autocast(device, autocast_dtype):
                logits = network(image)
                if isinstance(logits, list | tuple):
                    logits = logits[0]
            loss = loss_fn(logits.float(), label) / plan.accumulation
            loss.backward()  # type: ignore[no-untyped-call]
            loss_value += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12.0)
        optimizer.step()
        done = it + 1
        row: dict[str, Any] = {"iteration": done, "loss": loss_value}
        if val_cases and (done % config.validate_every == 0 or done == total):
            scores = validate(
                network,
                val_cases,
                classes=classes,
                mode=config.mode,
                roi_size_vox=roi,
                autocast_dtype=autocast_dtype,
                device=device,
            )
            row["dice"] = scores["dice"]
            finite = [d for d in scores["dice"] if d == d]
            last_dice = sum(finite) / len(finite) if finite else float("nan")
            row["dice_mean"] = last_dice
        history.append(row)
        if done % config.checkpoint_every == 0 or done == end:
            _checkpoint(ckpt_path, run_key, done, network, optimizer, history)
        if progress is not None:
            elapsed = time.perf_counter() - t0
            rate = elapsed / max(1, done - resumed_from)
            progress(
                TrainProgress(done, total, loss_value, last_dice, elapsed, rate * (total - done))
            )
    seconds = time.perf_counter() - t0
    final: dict[str, list[float]] = {}
    finished = end == total or budget_hit
    if finished and val_cases:
        final = validate(
            network,
            val_cases,
            classes=classes,
            mode=config.mode,
            roi_size_vox=roi,
            autocast_dtype=autocast_dtype,
            device=device,
            spacing_mm=spacing_mm,
        )
    spec = ModelSpec(
        network=net_config,
        mode=config.mode,
        labels=dict(scheme.labels),
        label_scheme=scheme.name,
        spacing_mm=spacing_mm,
        orientation=orientation,
        normalisation=config.normalisation,
        roi_size_vox=roi,
        flip_axes=() if side_canonical else _trained_flips(config, orientation),
        side_canonical=side_canonical,
        data_fingerprint=data_fp,
        training={
            "config": config.model_dump(mode="json"),
            "plan": {
                "patch_size_vox": list(plan.patch_size_vox),
                "batch_size": plan.batch_size,
                "accumulation": plan.accumulation,
                "checkpointing": plan.checkpointing,
                "source": plan.source,
                "predicted_bytes": plan.predicted_bytes,
            },
            "iterations": end,
            "train_cases": [c.name for c in train_cases],
            "val_cases": [c.name for c in val_cases],
            "validation": final,
            "seconds_this_session": seconds,
        },
    )
    state = {k: v.detach().cpu() for k, v in _unwrap(network).state_dict().items()}
    model = SegmentationModel(spec=spec, state_dict=state)
    written = save_model(model, model_path) if (model_path is not None and finished) else None
    return TrainResult(
        model=model,
        history=history,
        validation=final,
        seconds=seconds,
        iterations_run=end - start,
        resumed_from=resumed_from,
        model_path=written,
    )


def _trained_flips(config: TrainConfig, orientation: str) -> tuple[int, ...]:
    axis = left_right_axis(orientation)
    if config.augment and config.mode == "3d" and axis is not None:
        return (axis,)
    return ()


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "fp32":
        return None
    if config.precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except (AttributeError, RuntimeError):
        return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """``torch.autocast`` with ``dtype``, or a disabled one for plain fp32."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def _with_checkpointing(network: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Wrap the network's blocks in activation checkpointing (the registry's helper)."""
    import importlib

    try:
        helper = importlib.import_module("kneescope.models.checkpointing").apply_checkpointing
    except (ImportError, AttributeError):
        log.warning("activation checkpointing unavailable in this kneescope; training without")
        return network
    helper(network, mode)
    return network


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(network, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else network


def _checkpoint(
    path: Path,
    run_key: str,
    iteration: int,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, Any]],
) -> None:
    payload = {
        "run_key": run_key,
        "iteration": iteration,
        "model": _unwrap(network).state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _resume(
    path: Path,
    run_key: str,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> tuple[int, list[dict[str, Any]]]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to start over"
        ) from None
    if payload.get("run_key") != run_key:
        log.warning("checkpoint %s belongs to another config or data set; starting over", path)
        return 0, []
    _unwrap(network).load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    log.info("resuming from iteration %d", payload["iteration"])
    return int(payload["iteration"]), list(payload["history"])
