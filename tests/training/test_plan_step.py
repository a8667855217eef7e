"""Patch and batch sizes come from the memory planner unless the config gives them."""

from __future__ import annotations

import pytest
import torch

from kneescope.models import NetworkConfig, divisor
from kneescope.training.engine_config import EngineConfig
from kneescope.training.step_plan import budget_bytes, plan_step
from kneescope.training.task import Metrics, PatchRequest, TaskBatch

NET = NetworkConfig(
    name="unet", spatial_dims=3, out_channels=10, features=(8, 16, 32), strides=(2, 2)
)


class _Patches:
    """A task that only asks for patches (the planner needs no data)."""

    kind = "test"
    network = NET
    data_fingerprint = "0"
    train_size = 1

    def __init__(self, shape: tuple[int, ...], patch: tuple[int, ...] | None = None) -> None:
        self.request = PatchRequest(shape, patch, (64, 64, 64), 2)

    def patch_request(self) -> PatchRequest:
        return self.request

    def use_patch_size(self, patch_size_vox: tuple[int, ...]) -> None:
        raise AssertionError("plan_step must not set the patch")

    def batch(self, index: int, size: int) -> TaskBatch:
        raise AssertionError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise AssertionError

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        raise AssertionError

    def model_spec(self, metrics: Metrics | None) -> dict[str, object]:
        return {}


def test_config_sizes_win() -> None:
    plan = plan_step(_Patches((40, 64, 64), (16, 16, 16)), EngineConfig(batch_size=3))
    assert (plan.patch_size_vox, plan.batch_size, plan.source) == ((16, 16, 16), 3, "config")
    assert (plan.accumulation, plan.checkpointing) == (1, "off")


def test_engine_settings_override_the_plan() -> None:
    config = EngineConfig(batch_size=3, accumulation=4, checkpointing="per_block")
    plan = plan_step(_Patches((40, 64, 64), (16, 16, 16)), config)
    assert (plan.batch_size, plan.accumulation, plan.checkpointing) == (3, 4, "per_block")


def test_planner_chooses_within_budget() -> None:
    pytest.importorskip("kneescope.memory.planner")
    plan = plan_step(_Patches((24, 48, 48)), EngineConfig(budget="2GB", threads=1))
    assert plan.source == "planner"
    div = divisor(NET)
    assert plan.patch_size_vox is not None
    assert all(p % d == 0 for p, d in zip(plan.patch_size_vox, div, strict=True))
    assert all(p <= 48 for p in plan.patch_size_vox)
    assert plan.predicted_bytes is not None and plan.predicted_bytes <= 2_000_000_000


def test_budget_text_is_validated() -> None:
    from kneescope.errors import ConfigError

    assert budget_bytes("2GB") == 2_000_000_000
    assert budget_bytes("512 MB") == 512_000_000
    with pytest.raises(ConfigError, match="budget"):
        budget_bytes("lots")


def test_two_ranks_plan_each_ranks_share_with_ddp_buckets() -> None:
    pytest.importorskip("kneescope.memory.planner")
    config = EngineConfig(budget="2GB", threads=1)
    one = plan_step(_Patches((24, 48, 48)), config)
    two = plan_step(_Patches((24, 48, 48)), config, world_size=2)
    assert one.predicted_bytes is not None and two.predicted_bytes is not None
    assert two.predicted_bytes > one.predicted_bytes  # DDP's gradient buckets, per rank
    assert two.batch_size % 2 == 0  # the global batch: each rank's micro-batch twice
