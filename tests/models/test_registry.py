"""Model registry: presets build real MONAI/kneescope networks; the reference counts are exact."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kneescope.errors import NotFoundError
from kneescope.models import (
    PRESETS,
    NetworkConfig,
    build_network,
    count_parameters,
    divisor,
    model_fingerprint,
    preset,
    vgg_parameter_count,
)

# The reference tables (docs/memory.md), "#parameters [in millions]" (truncated: 139.59 M -> 139).
SEED_VGG_PARAMS_M = {
    (224, 224): 139,
    (256, 256): 171,
    (320, 320): 246,
    (384, 384): 338,
    (512, 512): 573,
    (80, 80, 80): 93,
    (96, 96, 96): 133,
    (128, 128, 128): 211,
    (128, 144, 144): 211,
    (160, 384, 384): 1586,
}


@pytest.mark.parametrize(("shape", "millions"), SEED_VGG_PARAMS_M.items())
def test_vgg_parameter_counts_match_the_reference_tables(
    shape: tuple[int, ...], millions: int
) -> None:
    config = preset(f"vgg19-{len(shape)}d", shape)
    analytic = vgg_parameter_count(config)
    assert analytic // 1_000_000 == millions
    with torch.device("meta"):  # 1.5 B parameters: never allocate them
        net = build_network(config)
    assert sum(p.numel() for p in net.parameters()) == analytic


def test_vgg_exact_values() -> None:
    assert count_parameters(preset("vgg19-2d", (224, 224))) == 139_589_573
    assert count_parameters(preset("vgg19-3d", (160, 384, 384))) == 1_586_814_021


def test_nnunet_class_preset_is_big_enough() -> None:
    config = preset("unet3d-nnunet")
    assert config.features[0] == 32
    assert count_parameters(config) >= 30_000_000
    assert divisor(config) == (32, 32, 32)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n == "unet3d-nnunet" else n  # 30 M parameters
        for n in sorted(PRESETS)
    ],
)
def test_presets_run_forward_on_divisible_input(name: str) -> None:
    config = preset(name)
    if config.name == "vgg_classifier":
        config = preset(name, (32,) * config.spatial_dims)
        config = config.model_copy(update={"fc_features": (8,)})
        config = NetworkConfig.model_validate(config.model_dump())
    net = build_network(config)
    net.eval()
    side = max(divisor(config)) * (2 if config.spatial_dims == 3 else 4)
    shape = (side,) * config.spatial_dims
    if config.name == "vgg_classifier":
        shape = config.input_shape_vox or shape
    with torch.no_grad():
        out = net(torch.zeros(1, config.in_channels, *shape))
    if config.name == "vgg_classifier":
        assert out.shape == (1, config.out_channels)
    else:
        assert out.shape == (1, config.out_channels, *shape)


def test_divisor_per_axis_for_anisotropic_strides() -> None:
    config = NetworkConfig(
        name="dynunet",
        features=(8, 16, 32),
        strides=(1, (1, 2, 2), (2, 2, 2)),
    )
    assert divisor(config) == (2, 4, 4)


def test_fingerprint_is_deterministic_and_sensitive() -> None:
    a = preset("unet3d-small")
    b = NetworkConfig.model_validate(a.model_dump())
    assert model_fingerprint(a) == model_fingerprint(b)
    c = NetworkConfig.model_validate({**a.model_dump(), "features": (8, 16, 32, 64)})
    assert model_fingerprint(a) != model_fingerprint(c)


def test_unknown_preset_and_bad_config() -> None:
    with pytest.raises(NotFoundError, match="unet3d-nnunet"):
        preset("nope")
    with pytest.raises(ValidationError):
        NetworkConfig(name="unet", features=(8, 16), strides=(2, 2))
    with pytest.raises(ValidationError):
        NetworkConfig(name="vgg_classifier", features=(8,), convs_per_stage=(1,))


@settings(max_examples=25, deadline=None)
@given(
    dims=st.sampled_from([2, 3]),
    sizes=st.lists(st.integers(32, 200), min_size=3, max_size=3),
    widths=st.lists(st.integers(1, 16), min_size=2, max_size=4),
)
def test_vgg_analytic_count_equals_built_module(
    dims: int, sizes: list[int], widths: list[int]
) -> None:
    config = NetworkConfig(
        name="vgg_classifier",
        spatial_dims=dims,  # type: ignore[arg-type]
        out_channels=5,
        features=tuple(widths),
        convs_per_stage=tuple(1 + i % 2 for i in range(len(widths))),
        fc_features=(7,),
        input_shape_vox=tuple(sizes[:dims]),
    )
    with torch.device("meta"):
        net = build_network(config)
    assert vgg_parameter_count(config) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", ["unet", "basic_unet"])
def test_norm_none_builds_a_network_without_normalisation_layers(name: str) -> None:
    """``norm = "none"`` means no normalisation layer (it crashed for unet and silently built
    instance norms for basic_unet)."""
    features = (4, 8) if name == "unet" else (4, 4, 8, 8, 16, 4)
    strides = (2,) if name == "unet" else ()
    config = NetworkConfig(
        name=name, spatial_dims=2, features=features, strides=strides, norm="none"
    )
    net = build_network(config)
    norms = [m for m in net.modules() if "Norm" in type(m).__name__]
    assert norms == []
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 10, 32, 32)


def test_dynunet_without_normalisation_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="dynunet needs a normalisation layer"):
        NetworkConfig(name="dynunet", features=(4, 8), strides=(1, 2), norm="none")
