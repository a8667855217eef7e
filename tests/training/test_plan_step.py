"""Patch and batch sizes come from the memory planner unless the config gives them."""

from __future__ import annotations

import pytest

from kneescope.models import NetworkConfig, divisor
from kneescope.training.config import TrainConfig
from kneescope.training.loop import plan_step

NET = NetworkConfig(
    name="unet", spatial_dims=3, out_channels=10, features=(8, 16, 32), strides=(2, 2)
)


def test_config_sizes_win() -> None:
    config = TrainConfig(network=NET, patch_size_vox=(16, 16, 16), batch_size=3)
    plan = plan_step(config, NET, (40, 64, 64))
    assert (plan.patch_size_vox, plan.batch_size, plan.source) == ((16, 16, 16), 3, "config")


def test_planner_chooses_within_budget() -> None:
    pytest.importorskip("kneescope.memory.planner")
    config = TrainConfig(network=NET, budget="2GB", threads=1)
    plan = plan_step(config, NET, (24, 48, 48))
    assert plan.source == "planner"
    div = divisor(NET)
    assert all(p % d == 0 for p, d in zip(plan.patch_size_vox, div, strict=True))
    assert all(p <= 48 for p in plan.patch_size_vox)
    assert plan.predicted_bytes is not None and plan.predicted_bytes <= 2_000_000_000


def test_budget_text_is_validated() -> None:
    from kneescope.errors import ConfigError
    from kneescope.training.loop import _budget_bytes

    assert _budget_bytes("2GB") == 2_000_000_000
    assert _budget_bytes("512 MB") == 512_000_000
    with pytest.raises(ConfigError, match="budget"):
        _budget_bytes("lots")
