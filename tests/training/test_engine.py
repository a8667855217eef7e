"""The training engine on a tiny task (2D squares, seconds): gradient accumulation equals the
bigger batch, exact resume with EMA and early stopping, the weight average, early stopping
keeps the best weights, the model file records the task's kind, spec and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_file import load_model_file
from kneescope.training.engine import FitResult, fit
from kneescope.training.engine_config import EngineConfig
from kneescope.training.task import Metrics, TaskBatch, TrainingTask

NET = NetworkConfig(
    name="unet",
    spatial_dims=2,
    out_channels=2,
    features=(4, 8),
    strides=(2,),
    num_res_units=0,
)


def square(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n``: a bright 6x6 square at a seeded place in noise, and its mask."""
    rng = np.random.default_rng(n)
    mask = np.zeros((16, 16), dtype=np.int64)
    i, j = rng.integers(0, 10, 2)
    mask[i : i + 6, j : j + 6] = 1
    image = mask + rng.normal(0.0, 0.3, (16, 16))
    return image.astype(np.float32), mask


class Squares:
    """Find the square. Sample ``j`` of ``batch(index, size)`` is sample ``index * size + j``
    of one stream, so ``batch(i, 4)`` holds exactly the samples of ``batch(2i, 2)`` and
    ``batch(2i + 1, 2)``. ``scores`` replaces the measured Dice per validation when given."""

    kind = "squares"
    network = NET
    data_fingerprint = "squares-v1"
    train_size = 1000

    def __init__(self, scores: Sequence[float] = ()) -> None:
        self.scores = list(scores)
        self.validations = 0

    def batch(self, index: int, size: int) -> TaskBatch:
        pairs = [square(index * size + j) for j in range(size)]
        images = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
        masks = torch.from_numpy(np.stack([p[1] for p in pairs]))
        return TaskBatch(inputs=images, targets=masks)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(outputs, targets)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        batch = self.batch(10_000, 8)
        with torch.no_grad():
            pred = network(batch.inputs.to(device)).argmax(1).cpu()
        inter = float(((pred == 1) & (batch.targets == 1)).sum())
        dice = 2 * inter / float((pred == 1).sum() + (batch.targets == 1).sum())
        self.validations += 1
        score = self.scores[self.validations - 1] if self.scores else dice
        return Metrics(score=score, values={"dice": dice})

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        return {"classes": ["background", "square"], "training": {"note": "tiny"}}


def engine(**kw: Any) -> EngineConfig:
    base: dict[str, Any] = {
        "iterations": 12,
        "batch_size": 4,
        "lr": 0.02,
        "precision": "fp32",
        "validate_every": 4,
        "checkpoint_every": 3,
        "threads": 1,
        "seed": 5,
    }
    return EngineConfig.model_validate({**base, **kw})


def run(task: TrainingTask, config: EngineConfig, folder: Path, **kw: Any) -> FitResult:
    return fit(task, config, run_dir=folder, model_path=folder / "model.pt", **kw)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, rtol=1e-5, atol=1e-6)


def predictions(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The network's logits on held-out squares (a conv bias right before an instance norm
    has no effect and a ~0 gradient that Adam turns into noise, so compare what counts)."""
    net = build_network(NET)
    net.load_state_dict(state)
    with torch.no_grad():
        out: torch.Tensor = net.eval()(Squares().batch(20_000, 4).inputs)
    return out


def test_accumulation_equals_the_bigger_batch(tmp_path: Path) -> None:
    whole = run(Squares(), engine(batch_size=4), tmp_path / "a")
    split = run(Squares(), engine(batch_size=2, accumulation=2), tmp_path / "b")
    assert (whole.plan["batch_size"], split.plan["accumulation"]) == (4, 2)
    assert [h["loss"] for h in split.history] == pytest.approx(
        [h["loss"] for h in whole.history], rel=1e-5
    )
    torch.testing.assert_close(
        predictions(split.model.state_dict),
        predictions(whole.model.state_dict),
        rtol=1e-4,
        atol=1e-5,
    )
    assert whole.history[0]["loss"] > whole.history[-1]["loss"]  # it learns


def test_model_file_records_kind_spec_metrics_and_run(tmp_path: Path) -> None:
    result = run(Squares(), engine(), tmp_path)
    assert result.model_path == tmp_path / "model.pt"
    model = load_model_file(tmp_path / "model.pt", kind="squares")
    assert model.spec == {"classes": ["background", "square"]}
    assert result.metrics is not None
    assert model.metrics == {
        "score": result.metrics.score,
        "values": {"dice": result.metrics.score},
    }
    assert model.data_fingerprint == "squares-v1"
    assert model.training["note"] == "tiny" and model.training["iterations"] == 12
    assert model.training["engine"]["batch_size"] == 4
    assert [h["iteration"] for h in result.history if "score" in h] == [4, 8, 12]
    assert_same_weights(result.model.state_dict, model.state_dict)


def test_weight_average_is_the_ema_of_the_trained_weights(tmp_path: Path) -> None:
    steps: list[dict[str, torch.Tensor]] = []
    for n in range(5):  # the raw weights after 0..4 iterations (exact resume in one folder)
        partial = run(Squares(), engine(iterations=4), tmp_path / "raw", stop_after=n)
        steps.append({k: v.clone() for k, v in partial.model.state_dict.items()})
    averaged = run(Squares(), engine(iterations=4, ema_decay=0.5), tmp_path / "ema")
    expected = dict(steps[0])
    for weights in steps[1:]:
        expected = {
            k: (0.5 * expected[k].float() + 0.5 * v.float()).to(v.dtype) for k, v in weights.items()
        }
    assert_same_weights(expected, averaged.model.state_dict)
    assert not torch.allclose(expected["model.0.conv.weight"], steps[-1]["model.0.conv.weight"])


def test_early_stopping_keeps_the_best_weights(tmp_path: Path) -> None:
    scores = [0.1, 0.5, 0.4, 0.3, 0.9]
    config = engine(iterations=40, validate_every=2, early_stopping_patience=2)
    result = run(Squares(scores), config, tmp_path / "stop")
    assert result.stopped_early
    assert result.iterations_run == 8  # validations at 2, 4 (best), 6, 8: two without gain
    assert result.metrics is not None and result.metrics.score == 0.5
    at_best = run(Squares(), engine(iterations=40, validate_every=2), tmp_path / "b", stop_after=4)
    assert_same_weights(at_best.model.state_dict, result.model.state_dict)
    again = run(Squares(scores), config, tmp_path / "stop")  # run again: nothing to train
    assert (again.resumed_from, again.iterations_run, again.stopped_early) == (8, 0, True)
    assert_same_weights(result.model.state_dict, again.model.state_dict)
    assert load_model_file(tmp_path / "stop" / "model.pt").metrics == {
        "score": 0.5,
        "values": {"dice": pytest.approx(result.metrics.values["dice"])},
    }


def test_resume_with_ema_and_early_stopping_is_exact(tmp_path: Path) -> None:
    config = engine(iterations=10, validate_every=2, ema_decay=0.9, early_stopping_patience=3)
    whole = run(Squares(), config, tmp_path / "a")
    first = run(Squares(), config, tmp_path / "b", stop_after=5)
    assert first.model_path is None and first.iterations_run == 5
    second = run(Squares(), config, tmp_path / "b")
    assert (second.resumed_from, second.iterations_run) == (5, whole.iterations_run - 5)
    assert [h["loss"] for h in second.history] == pytest.approx(
        [h["loss"] for h in whole.history], rel=1e-6
    )
    assert_same_weights(whole.model.state_dict, second.model.state_dict)


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path: Path) -> None:
    run(Squares(), engine(iterations=6), tmp_path, stop_after=3)
    other = run(Squares(), engine(iterations=6, lr=0.01), tmp_path)
    assert other.resumed_from == 0 and other.iterations_run == 6


def test_activation_checkpointing_changes_memory_not_results(tmp_path: Path) -> None:
    plain = run(Squares(), engine(iterations=4, checkpointing="off"), tmp_path / "off")
    saved = run(Squares(), engine(iterations=4, checkpointing="per_block"), tmp_path / "on")
    assert saved.plan["checkpointing"] == "per_block"
    assert [h["loss"] for h in saved.history] == pytest.approx(
        [h["loss"] for h in plain.history], rel=1e-5
    )
    assert_same_weights(plain.model.state_dict, saved.model.state_dict)


def test_learning_rate_schedules() -> None:
    from kneescope.training.schedule import learning_rate

    assert [learning_rate("poly", t, 10, 1.0) for t in (0, 5)] == [1.0, 0.5**0.9]
    assert [learning_rate("constant", t, 10, 0.1, warmup=4) for t in (0, 3, 4, 9)] == [
        0.025,
        0.1,
        0.1,
        0.1,
    ]
    cosine = [learning_rate("cosine", t, 12, 1.0, warmup=2) for t in range(12)]
    assert cosine[:3] == [0.5, 1.0, 1.0]
    assert cosine == sorted(cosine[:2]) + sorted(cosine[2:], reverse=True)
    assert cosine[7] == pytest.approx(0.5) and 0 < cosine[-1] < 0.03
