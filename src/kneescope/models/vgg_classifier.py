"""A VGG-like 2D/3D classifier whose parameter counts reproduce the commonly quoted tables.

Architecture (VGG19, configuration "E", adapted to one input channel and 5 classes):
five stages of 3^d convolutions (padding 1, bias, ReLU) with widths 64, 128, 256, 512, 512
and 2, 2, 4, 4, 4 convolutions, each stage closed by a 2^d max pool (stride 2, floor); then
flatten, FC 4096, ReLU, dropout, FC 4096, ReLU, dropout, FC 5. The first FC layer takes the
flattened conv output, so the parameter count depends on the input size:
``conv + (512 * prod(floor(n / 32))) * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 5 + 5``.
The conv stack holds 20,023,232 parameters in 2D and 60,058,688 in 3D (27 instead of 9 kernel
weights). See docs/memory.md for the table.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kneescope.models.network_config import NetworkConfig


class VGGStage(nn.Sequential):
    """``n`` convolutions (3^d, padding 1) with ReLU, then a 2^d max pool.

    Input ``(B, C_in, *S)`` float; output ``(B, C_out, *floor(S / 2))``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, n_convs: int):
        conv: type[nn.Module] = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        pool: type[nn.Module] = nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers.append(conv(in_channels if i == 0 else out_channels, out_channels, 3, padding=1))
            layers.append(nn.ReLU(inplace=True))
        layers.append(pool(2, 2))
        super().__init__(*layers)


class VGGClassifier(nn.Module):
    """VGG-like classifier for a fixed input size.

    ``forward(x)``: ``x`` is ``(B, in_channels, *input_shape_vox)`` float; returns logits
    ``(B, out_channels)``.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        assert config.input_shape_vox is not None  # checked by NetworkConfig
        dims = config.spatial_dims
        stages: list[nn.Module] = []
        c_in = config.in_channels
        for width, n in zip(config.features, config.convs_per_stage, strict=True):
            stages.append(VGGStage(dims, c_in, width, n))
            c_in = width
        self.features = nn.Sequential(*stages)
        flat = c_in * math.prod(vgg_conv_output_shape(config))
        if flat == 0:
            raise ValueError(
                f"input {config.input_shape_vox} is too small for {len(config.features)} pools"
            )
        head: list[nn.Module] = [nn.Flatten()]
        for width in config.fc_features:
            head += [nn.Linear(flat, width), nn.ReLU(inplace=True)]
            if config.dropout > 0:
                head.append(nn.Dropout(config.dropout))
            flat = width
        head.append(nn.Linear(flat, config.out_channels))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


def vgg_conv_output_shape(config: NetworkConfig) -> tuple[int, ...]:
    """Spatial shape after the conv stages: each pool halves with floor."""
    assert config.input_shape_vox is not None
    shape = config.input_shape_vox
    for _ in config.features:
        shape = tuple(n // 2 for n in shape)
    return shape


def vgg_parameter_count(config: NetworkConfig) -> int:
    """Parameters of :class:`VGGClassifier` for ``config``, counted analytically (no tensors)."""
    k = 3**config.spatial_dims
    total = 0
    c_in = config.in_channels
    for width, n in zip(config.features, config.convs_per_stage, strict=True):
        for i in range(n):
            cin = c_in if i == 0 else width
            total += cin * width * k + width
        c_in = width
    flat = c_in * math.prod(vgg_conv_output_shape(config))
    for width in config.fc_features:
        total += flat * width + width
        flat = width
    return total + flat * config.out_channels + config.out_channels
