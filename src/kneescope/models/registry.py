"""Build networks from :class:`NetworkConfig`, by config or by preset name.

MONAI provides the segmentation networks (``UNet``, ``BasicUNet``, ``DynUNet``); kneescope adds
the VGG-like classifier. :func:`divisor` says which multiple every input axis must be for
the network to down- and up-sample cleanly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from kneescope.config import config_hash
from kneescope.errors import NotFoundError
from kneescope.models.image_classifier import ImageClassifier
from kneescope.models.network_config import NetworkConfig, Stride
from kneescope.models.vgg_classifier import VGGClassifier, vgg_parameter_count

VGG19_WIDTHS = (64, 128, 256, 512, 512)
VGG19_CONVS = (2, 2, 4, 4, 4)

PRESETS: dict[str, NetworkConfig] = {
    "unet2d-small": NetworkConfig(
        name="unet",
        spatial_dims=2,
        features=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
        act="prelu",
    ),
    "unet3d-small": NetworkConfig(
        name="unet",
        spatial_dims=3,
        features=(16, 32, 64, 128),
        strides=(2, 2, 2),
        num_res_units=1,
        act="prelu",
    ),
    "basic-unet3d": NetworkConfig(
        name="basic_unet", spatial_dims=3, features=(32, 32, 64, 128, 256, 32)
    ),
    # nnU-Net-class 3D full-resolution U-Net: 32 base filters doubling to a cap of 320,
    # two 3^3 convs per stage, instance norm, leaky ReLU, 5 down-samplings (divisor 32).
    "unet3d-nnunet": NetworkConfig(
        name="dynunet",
        spatial_dims=3,
        features=(32, 64, 128, 256, 320, 320),
        strides=(1, 2, 2, 2, 2, 2),
    ),
    "vgg19-2d": NetworkConfig(
        name="vgg_classifier",
        spatial_dims=2,
        out_channels=5,
        features=VGG19_WIDTHS,
        convs_per_stage=VGG19_CONVS,
        fc_features=(4096, 4096),
        dropout=0.5,
        norm="none",
        act="relu",
        input_shape_vox=(224, 224),
    ),
    "vgg19-3d": NetworkConfig(
        name="vgg_classifier",
        spatial_dims=3,
        out_channels=5,
        features=VGG19_WIDTHS,
        convs_per_stage=VGG19_CONVS,
        fc_features=(4096, 4096),
        dropout=0.5,
        norm="none",
        act="relu",
        input_shape_vox=(128, 128, 128),
    ),
}
"""Named networks. VGG presets carry a default input size; pass another to :func:`preset`."""


def preset(name: str, input_shape_vox: tuple[int, ...] | None = None) -> NetworkConfig:
    """The preset ``name``; for classifiers, sized for ``input_shape_vox`` when given.

    Raises:
        NotFoundError: no preset of that name.
    """
    try:
        config = PRESETS[name]
    except KeyError:
        raise NotFoundError(
            f"no network preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None
    if input_shape_vox is not None and config.name == "vgg_classifier":
        config = NetworkConfig.model_validate(
            {**config.model_dump(), "input_shape_vox": tuple(input_shape_vox)}
        )
    return config


def _axis_strides(stride: Stride, spatial_dims: int) -> tuple[int, ...]:
    return stride if isinstance(stride, tuple) else (stride,) * spatial_dims


def divisor(config: NetworkConfig) -> tuple[int, ...]:
    """Per-axis multiple that every input size must be (product of the down-sampling strides)."""
    dims = config.spatial_dims
    if config.name == "basic_unet":
        return (16,) * dims
    if config.name == "vgg_classifier":
        return (2 ** len(config.features),) * dims
    if config.name == "resnet":
        return (1,) * dims  # global average pooling: any size of at least 32
    per_axis = [_axis_strides(s, dims) for s in config.strides]
    return tuple(math.prod(s[a] for s in per_axis) for a in range(dims))


def is_classifier(config: NetworkConfig) -> bool:
    """Whether ``config`` is an image classifier (one class score vector per image: targets
    ``(B,)``), not a segmentation network (a score per voxel)."""
    return config.name in ("vgg_classifier", "resnet")


def model_fingerprint(config: NetworkConfig) -> str:
    """Deterministic 16-hex-digit hash of the config (same config -> same fingerprint)."""
    return f"{config.name}-{config_hash(config)}"


def _act(config: NetworkConfig) -> tuple[str, dict[str, Any]]:
    if config.act == "leakyrelu":
        return ("leakyrelu", {"negative_slope": 0.01, "inplace": True})
    if config.act == "relu":
        return ("relu", {"inplace": True})
    return ("prelu", {})


def _norm(config: NetworkConfig) -> tuple[str, dict[str, Any]] | None:
    if config.norm == "none":
        return None
    return (config.norm, {"affine": True})


def build_network(config: NetworkConfig) -> nn.Module:
    """Instantiate the network ``config`` describes (on the current default device).

    Build under ``torch.device("meta")`` to inspect shapes and counts without allocating.
    """
    from monai.networks.nets.basic_unet import BasicUNet
    from monai.networks.nets.dynunet import DynUNet
    from monai.networks.nets.unet import UNet

    dims = config.spatial_dims
    norm = _norm(config)
    # MONAI's UNet and BasicUNet pass norm to Convolution, which takes None as "no norm layer"
    # (their signatures do not say so)
    no_norm_ok: Any = norm
    if config.name == "unet":
        return UNet(
            spatial_dims=dims,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            channels=config.features,
            strides=[s if isinstance(s, int) else s[0] for s in config.strides],
            kernel_size=config.kernel_size,
            num_res_units=config.num_res_units,
            act=_act(config),
            norm=no_norm_ok,
            dropout=config.dropout,
        )
    if config.name == "basic_unet":
        return BasicUNet(
            spatial_dims=dims,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            features=config.features,
            act=_act(config),
            norm=no_norm_ok,
            dropout=config.dropout,
        )
    if config.name == "dynunet":
        strides = [_axis_strides(s, dims) for s in config.strides]
        return DynUNet(
            spatial_dims=dims,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            kernel_size=[config.kernel_size] * len(config.features),
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=config.features,
            dropout=config.dropout or None,
            norm_name=norm or ("instance", {"affine": True}),  # "none" is refused by the config
            act_name=_act(config),
            deep_supervision=config.deep_supervision,
            res_block=config.num_res_units > 0,
        )
    if config.name == "resnet":
        return ImageClassifier(config)
    return VGGClassifier(config)


def count_parameters(config: NetworkConfig) -> int:
    """Number of trainable parameters, without allocating them (meta device or analytic)."""
    if config.name == "vgg_classifier":
        return vgg_parameter_count(config)
    with torch.device("meta"):
        net = build_network(config)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
