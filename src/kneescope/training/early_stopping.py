"""Early stopping on the validation score, with the best weights kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from kneescope.training.task import Metrics


@dataclass
class EarlyStopping:
    """Stops after ``patience`` validations in a row without a better score.

    Attributes:
        patience: validations without improvement that end training.
        best_score: the best score so far (``-inf`` before the first validation).
        best_iteration: the iteration that reached it (0: none yet).
        bad_validations: validations since the last improvement.
        best_state: CPU copy of the weights at the best score.
        best_values: the metric values at the best score.
    """

    patience: int
    best_score: float = float("-inf")
    best_iteration: int = 0
    bad_validations: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_values: dict[str, Any] = field(default_factory=dict)

    def observe(self, metrics: Metrics, iteration: int, weights: dict[str, torch.Tensor]) -> bool:
        """Record a validation; True when training should stop now (NaN never improves)."""
        score = metrics.score
        if score == score and score > self.best_score:
            self.best_values = dict(metrics.values)
            self.best_score = score
            self.best_iteration = iteration
            self.bad_validations = 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in weights.items()}
            return False
        self.bad_validations += 1
        return self.bad_validations >= self.patience

    def best_metrics(self) -> Metrics | None:
        """The metrics of the best validation (``None`` before one)."""
        if self.best_iteration == 0:
            return None
        return Metrics(score=self.best_score, values=self.best_values)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_values": self.best_values,
            "best_score": self.best_score,
            "best_iteration": self.best_iteration,
            "bad_validations": self.bad_validations,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = float(state["best_score"])
        self.best_iteration = int(state["best_iteration"])
        self.bad_validations = int(state["bad_validations"])
        self.best_state = dict(state["best_state"])
        self.best_values = dict(state["best_values"])
