"""The planner in data parallel: DDP's gradient buckets on every rank (checked against the
buckets DistributedDataParallel really builds), the global batch split over the ranks, and,
when nothing fits, by how much and over how many ranks a sharded model (FSDP) would fit."""

from __future__ import annotations

import datetime
import math
import re
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from kneescope.errors import InputError, ResourceError
from kneescope.memory.planner import (
    GIB,
    ddp_bucket_bytes,
    largest_unit_bytes,
    plan_training,
    sharding_advice,
)
from kneescope.memory.predict import predict_step
from kneescope.memory.step import StepConfig
from kneescope.models import NetworkConfig, build_network
from kneescope.models.vgg_classifier import vgg_parameter_count

SMALL_UNET = NetworkConfig(
    name="unet", spatial_dims=3, features=(8, 16, 32), strides=(2, 2), out_channels=3
)
# A classifier whose weights dominate: 29.4 M parameters (118 MB of gradients), mostly six
# 2048-wide layers.
FC_HEAVY = NetworkConfig(
    name="vgg_classifier",
    spatial_dims=2,
    features=(8, 16),
    convs_per_stage=(1, 1),
    fc_features=(2048,) * 6,
    out_channels=2,
    input_shape_vox=(64, 64),
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNEESCOPE_CACHE_DIR", str(tmp_path / "cache"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_ddp_bucket_bytes_are_the_buckets_ddp_builds() -> None:
    """A one-rank gloo group is enough for DDP to build its reducer's buckets."""
    assert not dist.is_initialized()
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{_free_port()}",
        rank=0,
        world_size=1,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.manual_seed(0)
        model = DistributedDataParallel(build_network(SMALL_UNET))
        data = model._get_ddp_logging_data()
        buckets = [int(b) for b in str(data["bucket_sizes"]).split(",")]
        trainable = sum(p.numel() * p.element_size() for p in model.parameters())
    finally:
        dist.destroy_process_group()
    # (one rank keeps them in one bucket; several ranks in buckets of at most 25 MiB, or one
    # tensor larger than that alone: the same bytes in all)
    assert sum(buckets) == ddp_bucket_bytes(SMALL_UNET) == trainable == 117_420


def test_world_size_adds_the_buckets_to_every_candidate() -> None:
    """2 ranks with a global batch of 8 plan like 1 rank with a batch of 4, plus the buckets."""
    budget = 3 * GIB
    one = plan_training(SMALL_UNET, (32, 32, 32), None, budget, device="cpu", effective_batch=4)
    two = plan_training(
        SMALL_UNET, (32, 32, 32), None, budget, device="cpu", effective_batch=8, world_size=2
    )
    buckets = ddp_bucket_bytes(SMALL_UNET)
    assert (one.ddp_bucket_bytes, two.ddp_bucket_bytes, two.world_size) == (0, buckets, 2)
    by_config_1 = {(c.patch_size, c.batch_size, c.precision): c for c in one.candidates}
    assert two.candidates
    for c in two.candidates:
        assert c.breakdown_bytes["ddp_buckets"] == buckets
        assert c.required_bytes <= budget
        same = by_config_1[(c.patch_size, c.batch_size, c.precision)]
        assert c.required_bytes == same.required_bytes + buckets
        assert c.accumulation == same.accumulation == math.ceil(4 / c.batch_size)
    with pytest.raises(InputError):
        plan_training(SMALL_UNET, (32, 32, 32), None, budget, device="cpu", world_size=0)


def test_sharding_advice_in_known_bytes() -> None:
    params = vgg_parameter_count(FC_HEAVY)
    tensors = 2 * (2 + 7)  # weight and bias of 2 convolutions and 7 linear layers
    assert ddp_bucket_bytes(FC_HEAVY) == 4 * params
    assert largest_unit_bytes(FC_HEAVY) == 4 * (16 * 16 * 16 * 2048 + 2048)
    budget = int(0.9 * GIB)
    advice = sharding_advice(FC_HEAVY, budget, optimizer="adamw", device="cpu", world_size=2)
    # fp32 weights and gradients, AdamW's two moments, and its step counter per tensor
    assert advice.model_state_bytes == 4 * params + 4 * params + 8 * params + 4 * tensors
    smallest = predict_step(
        FC_HEAVY,
        StepConfig(
            input_shape_vox=(64, 64),
            precision="bf16",
            optimizer="adamw",
            checkpointing="per_block",
            offload=True,
            device="cpu",
        ),
    )
    assert advice.need_bytes == smallest.required_bytes + 4 * params
    assert advice.short_bytes == advice.need_bytes - budget > 0
    assert advice.ranks is not None and advice.per_rank_bytes is not None
    assert advice.per_rank_bytes <= budget
    # the fewest ranks: a budget just below that need asks for more ranks
    tighter = sharding_advice(
        FC_HEAVY, advice.per_rank_bytes - 1, optimizer="adamw", device="cpu", world_size=2
    )
    assert tighter.ranks is not None and tighter.ranks > advice.ranks
    assert f"FSDP over {advice.ranks} ranks: {advice.per_rank_bytes / GIB:.2f} GiB per rank" in (
        advice.message
    )
    assert f"budget 0.90 GiB (short by {advice.short_bytes / GIB:.2f} GiB)" in advice.message


def test_a_plan_where_nothing_fits_proposes_fsdp() -> None:
    budget = int(0.9 * GIB)
    plan = plan_training(
        FC_HEAVY,
        (64, 64),
        None,
        budget,
        optimizer="adamw",
        device="cpu",
        world_size=2,
        precisions=("bf16",),
        checkpointing=("off", "per_block"),
        offload=(False,),
    )
    assert not plan.candidates and plan.full_volume is None
    assert plan.sharding is not None and plan.sharding.ranks is not None
    with pytest.raises(ResourceError, match=r"FSDP over \d+ ranks: [\d.]+ GiB per rank"):
        _ = plan.best
    # a budget that no sharding helps: the smallest step's activations alone are too large
    hopeless = sharding_advice(FC_HEAVY, 2**20, optimizer="adamw", device="cpu")
    assert hopeless.ranks is None and hopeless.per_rank_bytes is None
    assert "would not make it fit" in hopeless.message


@pytest.mark.slow  # ~14 s of CLI runs; the planner logic has fast tests above
def test_plan_command_per_process_and_fsdp(capsys: pytest.CaptureFixture[str]) -> None:
    """``kneescope plan --nproc 2``: the buckets in the need; FSDP's ranks when nothing fits."""
    from kneescope.cli.app import main
    from kneescope.models.registry import preset

    buckets = 4 * vgg_parameter_count(preset("vgg19-2d", (224, 224)))
    args = ["plan", "--network", "vgg19-2d", "--shape", "224x224", "--optimizer", "adamw"]
    args += ["--precision", "bf16", "--nproc", "2"]
    assert main([*args, "-b", "3.5GiB"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: nothing fits 3.76 GB")
    assert f"DDP's gradient buckets {buckets / GIB:.2f} GiB" in err[0]
    assert re.search(r"; FSDP over \d+ ranks: [\d.]+ GiB per rank; raise --budget", err[0])
