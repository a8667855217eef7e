"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a ``torch.save`` of plain data (loads with ``weights_only=True``): the run key
(config and data fingerprint), the iteration, the weights, the optimiser state, the history and
the optional EMA and early-stopping states. It is written atomically, so a crash while writing
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kneescope.errors import ModelError
from kneescope.io.atomic import atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainingState:
    """What a checkpoint restores besides weights and optimiser state (``stopped_early``: the
    run ended by early stopping, so running it again trains no further)."""

    iteration: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    ema: dict[str, torch.Tensor] | None = None
    early_stopping: dict[str, Any] | None = None
    stopped_early: bool = False


def save_checkpoint(
    path: Path,
    run_key: str,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
) -> None:
    """Write the checkpoint atomically (``network`` unwrapped: no DDP prefix)."""
    payload = {
        "run_key": run_key,
        "iteration": state.iteration,
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": state.history,
        "ema": state.ema,
        "early_stopping": state.early_stopping,
        "stopped_early": state.stopped_early,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(
    path: Path,
    run_key: str,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> TrainingState | None:
    """Restore ``network`` and ``optimizer`` from ``path``; ``None`` when there is no
    checkpoint or it belongs to another config or data set (then training starts over).

    Raises:
        ModelError: the checkpoint exists but cannot be read.
    """
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,  # not plain data (weights_only refuses code)
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        zipfile.BadZipFile,
    ) as exc:
        raise ModelError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to start over"
        ) from None
    if not isinstance(payload, dict) or payload.get("run_key") != run_key:
        log.warning("checkpoint %s belongs to another config or data set; starting over", path)
        return None
    network.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    log.info("resuming from iteration %d", payload["iteration"])
    return TrainingState(
        iteration=int(payload["iteration"]),
        history=list(payload["history"]),
        ema=payload.get("ema"),
        early_stopping=payload.get("early_stopping"),
        stopped_early=bool(payload.get("stopped_early", False)),
    )
