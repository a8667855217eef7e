"""A 2D/3D image classifier on a MONAI ResNet backbone, for single images or image pairs.

``forward(x)``: ``x`` is ``(B, in_channels, *S)`` float (``paired``: ``(B, 2 * in_channels,
*S)``, the image then its pair); returns logits ``(B, out_channels)``.

Single: backbone (MONAI ``ResNet`` without its last layer, global average pooling) -> dropout
-> linear. Paired (a Siamese network, as in the knee-OA literature where one network sees both
knees): the same backbone (shared weights) runs on the image and on its pair; the linear layer
takes both feature vectors, the image's first. The backbone's last stage is ``backbone.layer4``
(the layer saliency methods such as Grad-CAM hook).
"""

from __future__ import annotations

import torch
from torch import nn

from kneescope.models.network_config import NetworkConfig


class ImageClassifier(nn.Module):
    """Backbone + linear head; see the module docstring for shapes."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        from monai.networks.nets.resnet import ResNet

        self.paired = config.paired
        self.in_channels = config.in_channels
        act = ("relu", {"inplace": True}) if config.act == "relu" else ("leakyrelu", {})
        self.backbone = ResNet(
            block="basic",
            layers=list(config.layers),
            block_inplanes=list(config.features),
            spatial_dims=config.spatial_dims,
            n_input_channels=config.in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            num_classes=config.out_channels,
            feed_forward=False,
            act=act,
            # affine: MONAI's ResNet initialises every norm layer's weight (none without it)
            norm=("instance", {"affine": True}) if config.norm == "instance" else "batch",
        )
        width = config.features[-1] * (2 if config.paired else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.out_channels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, width)`` pooled features (paired: both images' side by side)."""
        if not self.paired:
            out: torch.Tensor = self.backbone(x)
            return out
        b, c = x.shape[0], self.in_channels
        both = x.reshape(b * 2, c, *x.shape[2:])
        pooled: torch.Tensor = self.backbone(both)
        return pooled.reshape(b, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.dropout(self.features(x)))
        return out
