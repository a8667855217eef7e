"""The classification task's configuration (what is specific to classifying 2D images).

The engine's keys (iterations, batch size, learning rate, precision, ...) live in
:class:`kneescope.training.engine_config.EngineConfig`; this config holds only what the task
needs: the classes, the input grid, the normalisation, the network and the sampling.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN
from kneescope.models import NetworkConfig, divisor
from kneescope.transforms.intensity import NormalisationConfig


def default_classifier(
    input_size_vox: tuple[int, int], n_classes: int, in_channels: int = 1
) -> NetworkConfig:
    """A small 2D VGG-like classifier (three stages of 8, 16, 32 channels, one 64-wide FC).

    About 0.2 M parameters at 32 x 32: trains in seconds on a CPU.
    """
    return NetworkConfig(
        name="vgg_classifier",
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=n_classes,
        features=(8, 16, 32),
        convs_per_stage=(1, 1, 1),
        fc_features=(64,),
        norm="none",
        act="relu",
        input_shape_vox=input_size_vox,
    )


class SyntheticClassificationSource(BaseModel):
    """Train on generated images (:mod:`kneescope.capabilities.classification.synthetic`).

    Attributes:
        source: ``"synthetic"``.
        train: number of training images.
        validation: number of validation images (generated with another seed).
        n_classes: number of classes (bar orientations).
        class_weights: relative class frequencies; ``None``: equal.
        noise: standard deviation of the image noise (the bar's contrast is about 1).
    """

    model_config = FROZEN

    source: Literal["synthetic"] = "synthetic"
    train: int = Field(300, ge=1, le=100_000)
    validation: int = Field(100, ge=1, le=100_000)
    n_classes: int = Field(3, ge=2, le=12)
    class_weights: tuple[float, ...] | None = None
    noise: float = Field(0.3, ge=0.0)


class FolderClassificationSource(BaseModel):
    """Train on image files sorted into one sub-folder per class
    (:mod:`kneescope.capabilities.classification.folder_data`).

    Attributes:
        source: ``"folder"``.
        train: folder of the training images (``train/<class>/<image>``); a relative path is
            read from the training file's folder.
        validation: folder of the validation images, same layout.
    """

    model_config = FROZEN

    source: Literal["folder"] = "folder"
    train: str
    validation: str


class ClassificationAugment(BaseModel):
    """Random training augmentation, drawn per image from the run's seeded generator.

    Attributes:
        rotation_deg: in-plane rotation, uniform in +-rotation_deg.
        scale: zoom factor, uniform in 1 +- scale.
        translate: shift, uniform in +-translate of the image size per axis.
        intensity: contrast and offset of the normalised image, each uniform in +-intensity.
    """

    model_config = FROZEN

    rotation_deg: float = Field(10.0, ge=0.0, le=180.0)
    scale: float = Field(0.1, ge=0.0, lt=1.0)
    translate: float = Field(0.05, ge=0.0, lt=0.5)
    intensity: float = Field(0.2, ge=0.0, lt=1.0)


class ClassificationConfig(BaseModel):
    """What the classification task needs besides the engine settings.

    In a training file (``task = "classification"``) these are the keys that are not engine
    keys, with the data under ``[data]``.

    Attributes:
        classes: class names, in output-channel order (at least two, unique); empty: the
            data's class names.
        input_size_vox: image size (rows, columns) the network takes; every image must have it.
        network: the network (a ``vgg_classifier``, 2D, ``out_channels`` = number of classes,
            ``input_shape_vox`` = ``input_size_vox``); ``None``: :func:`default_classifier`.
        normalisation: per-image intensity normalisation (statistics of each image).
        balanced_sampling: draw training images class-balanced (each class equally often)
            instead of uniformly; for skewed class frequencies.
        flip_axes: image axes (0 = rows, 1 = columns) the training augmentation may flip; only
            axes whose flip keeps the class.
        loss: ``"cross_entropy"``, or ``"ordinal"`` for ordered classes (e.g. KL grades 0-4):
            cross-entropy against soft targets that put weight on the neighbouring grades,
            ``exp(-(k - y)^2 / (2 ordinal_sigma^2))`` normalised, so that a prediction one grade
            off costs less than one three grades off.
        ordinal_sigma: width of the ordinal soft targets, in grades.
        augment: random rotation/zoom/shift/contrast of training images; ``None``: off.
        crop_mm: the square field of view (mm) the training images cover, recorded in the
            model file so that a knee ROI can be cropped to match; ``None``: unknown.
        init_weights: a ``classification`` model file whose weights start the training
            (fine-tuning; a relative path is read from the training file's folder). A paired
            network can start from a single-image one of the same backbone: the backbone is
            shared, the head's weights for the image's features are copied and those for the
            pair's start at zero (so training starts from the single network's predictions).
        data: where ``kneescope train`` takes the images from; ``None`` when the task is
            built from arrays in Python.
    """

    model_config = FROZEN

    classes: tuple[str, ...] = ()
    input_size_vox: tuple[int, int] = (32, 32)
    network: NetworkConfig | None = None
    normalisation: NormalisationConfig = Field(default_factory=NormalisationConfig)
    balanced_sampling: bool = False
    flip_axes: tuple[int, ...] = ()
    loss: Literal["cross_entropy", "ordinal"] = "cross_entropy"
    ordinal_sigma: float = Field(0.5, gt=0.0, le=5.0)
    augment: ClassificationAugment | None = None
    crop_mm: float | None = Field(None, gt=0.0, le=1000.0)
    init_weights: str | None = None
    data: SyntheticClassificationSource | FolderClassificationSource | None = Field(
        None, union_mode="left_to_right"
    )

    @model_validator(mode="after")
    def _check(self) -> ClassificationConfig:
        if len(set(self.classes)) != len(self.classes) or not all(self.classes):
            raise ValueError(f"classes must be unique non-empty names, found {self.classes}")
        if len(self.classes) == 1:
            raise ValueError("classification needs at least two classes")
        if self.network is not None and (
            self.network.name not in ("vgg_classifier", "resnet") or self.network.spatial_dims != 2
        ):
            raise ValueError("classification needs a 2D vgg_classifier or resnet network")
        net = self.network or default_classifier(self.input_size_vox, max(2, len(self.classes)))
        smallest = (32, 32) if net.name == "resnet" else divisor(net)
        if not all(m <= n <= 4096 for n, m in zip(self.input_size_vox, smallest, strict=True)):
            raise ValueError(
                f"input_size_vox {self.input_size_vox} must be {smallest[0]} to 4096 pixels per "
                "axis (the network pools that many times)"
            )
        if any(a not in (0, 1) for a in self.flip_axes):
            raise ValueError(f"flip_axes are image axes 0 or 1, found {self.flip_axes}")
        if self.network is not None:
            net = self.network
            if self.classes and net.out_channels != len(self.classes):
                raise ValueError(
                    f"network out_channels {net.out_channels} must equal the number of "
                    f"classes ({len(self.classes)})"
                )
            if net.name == "vgg_classifier" and net.input_shape_vox != self.input_size_vox:
                raise ValueError(
                    f"network input_shape_vox {net.input_shape_vox} must equal "
                    f"input_size_vox {self.input_size_vox}"
                )
        return self

    def network_config(self, n_classes: int) -> NetworkConfig:
        """The network to train for ``n_classes`` (the given one or the default classifier)."""
        if self.network is not None:
            if self.network.out_channels != n_classes:
                raise ValueError(
                    f"network out_channels {self.network.out_channels} must equal the number "
                    f"of classes ({n_classes})"
                )
            return self.network
        return default_classifier(self.input_size_vox, n_classes)
