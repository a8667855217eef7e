"""Memory of 3D classifiers (issue 16, item 1): a MONAI-ResNet classifier is planned on its
whole input (never cut into patches) and its residual blocks can be checkpointed."""

from __future__ import annotations

import pytest
import torch

from kneescope.models import NetworkConfig, build_network
from kneescope.models.checkpointing import apply_checkpointing

TINY = NetworkConfig(
    name="resnet",
    spatial_dims=3,
    out_channels=5,
    features=(4, 8, 8, 8),
    layers=(1, 1, 1, 1),
    norm="instance",
    act="relu",
)
SHIPPED = TINY.model_copy(update={"features": (16, 32, 64, 128)})
"""The network of the shipped kl-mri-synth (capabilities.classification.mri_kl_network)."""


def test_resnet_blocks_are_checkpointed_with_identical_gradients() -> None:
    torch.manual_seed(0)
    plain = build_network(TINY)
    wrapped = build_network(TINY)
    wrapped.load_state_dict(plain.state_dict())
    assert apply_checkpointing(wrapped, "per_block") == 4  # one basic block per stage
    x = torch.randn(2, 1, 32, 32, 32)
    for net in (plain, wrapped):
        net.train()
        net(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), wrapped.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_the_planner_fits_a_whole_volume_training_step_in_11_gb() -> None:
    """The shipped network's training step on the whole 160x384x384 volume, as planned for
    an 11 GB CUDA device: a classifier is never cut into patches."""
    from kneescope.memory.planner import plan_training

    plan = plan_training(
        SHIPPED,
        (160, 384, 384),
        (0.7, 0.3646, 0.3646),
        11 * 10**9,
        device="cuda",
        batch_sizes=(1,),
        effective_batch=1,
    )
    assert plan.full_volume is not None
    assert plan.full_volume.patch_size == (160, 384, 384)
    assert plan.full_volume.required_bytes <= 11 * 10**9
    assert all(c.patch_size == (160, 384, 384) for c in plan.candidates)


@pytest.mark.slow  # ~15 s: a real training step in a fresh process
def test_the_3d_classifier_step_is_predicted_within_10_percent_of_the_cpu_rss() -> None:
    """The shipped network's training step (fp32: this CPU has no native bf16, Adam, batch
    2, on the shipped model's 48x128x128 grid) measured in a fresh process against the
    prediction; benchmarks/mri_kl_memory.py does the same on the whole 160x384x384 volume."""
    from kneescope.memory import StepConfig, measure_cpu, predict_step

    step = StepConfig(input_shape_vox=(48, 128, 128), batch_size=2, precision="fp32")
    measured = measure_cpu([(SHIPPED, step)])[0]
    predicted = predict_step(SHIPPED, step).peak_bytes
    assert 0.9 <= predicted / measured.peak_rss_bytes <= 1.1, (predicted, measured)
