"""The one configuration model for every network kneescope builds.

A :class:`NetworkConfig` names a network family and its widths, strides and options; the
registry (:mod:`kneescope.models.registry`) turns it into a ``torch.nn.Module``. Options are
fields, never subclasses.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN

NetworkName = Literal["unet", "basic_unet", "dynunet", "vgg_classifier", "resnet"]
"""Network families: MONAI ``UNet``, ``BasicUNet``, ``DynUNet``, ``ResNet``; kneescope's VGG-like
classifier."""

Stride = int | tuple[int, ...]


class NetworkConfig(BaseModel):
    """A network, fully specified.

    Field meaning per family:

    - ``unet`` (MONAI ``UNet``): ``features`` are the channels per level, ``strides`` one int
      per down-sampling (``len(features) - 1``), ``num_res_units`` residual units per block.
    - ``basic_unet`` (MONAI ``BasicUNet``): ``features`` are exactly 6 widths; fixed 4 pools.
    - ``dynunet`` (MONAI ``DynUNet``, nnU-Net style): ``features`` are the filters per stage,
      ``strides`` one int or per-axis tuple per stage (the first is usually 1).
    - ``vgg_classifier`` (kneescope): ``features`` are the conv widths per stage,
      ``convs_per_stage`` the number of 3^d convolutions per stage (each stage ends in a 2^d max
      pool), ``fc_features`` the hidden fully connected widths; ``input_shape_vox`` is required
      because the first fully connected layer takes the flattened conv output.
    - ``resnet`` (MONAI ``ResNet`` with basic blocks, a classifier): ``features`` are the 4 stage
      widths (ResNet-18: 64, 128, 256, 512), ``layers`` the residual blocks per stage
      (ResNet-18: 2, 2, 2, 2); global average pooling, then ``dropout`` and one linear layer.
      Any input of at least 32 pixels per axis.

    ``paired`` (``resnet`` only): the network takes ``(B, 2 * in_channels, *S)``: an image and
    its pair (e.g. the same patient's other knee, mirrored to the same side), runs one shared
    backbone on each and classifies the first image from both feature vectors (a Siamese
    network).
    """

    model_config = FROZEN

    name: NetworkName
    spatial_dims: Literal[2, 3] = 3
    in_channels: int = Field(1, ge=1)
    out_channels: int = Field(10, ge=1)
    features: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[Stride, ...] = ()
    kernel_size: int = Field(3, ge=1)
    num_res_units: int = Field(0, ge=0)
    norm: Literal["instance", "batch", "none"] = "instance"
    act: Literal["relu", "leakyrelu", "prelu"] = "leakyrelu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    deep_supervision: bool = False
    convs_per_stage: tuple[int, ...] = ()
    fc_features: tuple[int, ...] = ()
    input_shape_vox: tuple[int, ...] | None = None
    layers: tuple[int, ...] = ()
    paired: bool = False

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        if any(f < 1 for f in self.features):
            raise ValueError(f"features must be positive, found {self.features}")
        for s in self.strides:
            if isinstance(s, tuple) and len(s) != self.spatial_dims:
                raise ValueError(
                    f"per-axis stride {s} needs {self.spatial_dims} entries (spatial_dims)"
                )
        if self.input_shape_vox is not None and len(self.input_shape_vox) != self.spatial_dims:
            raise ValueError(
                f"input_shape_vox {self.input_shape_vox} needs {self.spatial_dims} entries"
            )
        if self.name == "unet" and len(self.strides) != len(self.features) - 1:
            raise ValueError(
                f"unet needs len(strides) == len(features) - 1, found {len(self.strides)} "
                f"strides for {len(self.features)} features"
            )
        if self.name == "unet" and not all(isinstance(s, int) for s in self.strides):
            raise ValueError("unet strides must be one int per level (isotropic); use dynunet")
        if self.name == "dynunet" and self.norm == "none":
            raise ValueError("dynunet needs a normalisation layer: norm = instance or batch")
        if self.name == "basic_unet" and len(self.features) != 6:
            raise ValueError(f"basic_unet needs exactly 6 features, found {len(self.features)}")
        if self.name == "dynunet" and len(self.strides) != len(self.features):
            raise ValueError(
                f"dynunet needs one stride per stage, found {len(self.strides)} strides for "
                f"{len(self.features)} filters"
            )
        if self.name == "resnet" and (len(self.features) != 4 or len(self.layers) != 4):
            raise ValueError(
                "resnet needs 4 stage widths (features) and 4 block counts (layers), found "
                f"{len(self.features)} and {len(self.layers)}"
            )
        if self.paired and self.name != "resnet":
            raise ValueError("paired inputs are for the resnet classifier")
        if self.name == "vgg_classifier":
            if len(self.convs_per_stage) != len(self.features):
                raise ValueError(
                    "vgg_classifier needs one entry of convs_per_stage per feature width, found "
                    f"{len(self.convs_per_stage)} and {len(self.features)}"
                )
            if self.input_shape_vox is None:
                raise ValueError("vgg_classifier needs input_shape_vox (its FC size depends on it)")
        return self
