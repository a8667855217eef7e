"""The ``classification`` model-file kind: what a classifier's model file records besides weights.

The generic envelope (network config, weights, data fingerprint, metrics, training record) is
:mod:`kneescope.models.model_file`'s; this is the kind-specific ``spec`` part.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN
from kneescope.errors import ModelError
from kneescope.transforms.intensity import NormalisationConfig

KIND = "classification"
"""Model-file kind of a trained classifier."""

MAX_CLASSES = 1000
MAX_INPUT_SIDE = 4096


class ClassificationSpec(BaseModel):
    """A classifier's kind-specific model-file part.

    Attributes:
        classes: class names in output-channel order.
        input_size_vox: image size (rows, columns) the network takes; a volume classifier:
            the volume grid (3 sizes, in axis code ``orientation``).
        normalisation: per-image intensity normalisation applied before the network.
        crop_mm: the square field of view (mm) the training images covered, centred on the
            object (a knee classifier takes this much of a standard knee ROI); ``None``: not
            known (images must then be given at the model's input size as crops).
        temperature: the logits are divided by it before the softmax (temperature scaling
            fitted on a validation set; 1: not calibrated).
        orientation: a volume classifier's grid axis code (e.g. ``"RIA"``): every volume is
            reoriented to it, a left knee mirrored onto a right one, and the whole field of
            view resampled to ``input_size_vox``
            (:func:`~kneescope.capabilities.classification.volume_data.prepare_volume`);
            ``None`` for 2D images.
    """

    model_config = FROZEN

    classes: tuple[str, ...] = Field(min_length=2, max_length=MAX_CLASSES)
    input_size_vox: tuple[int, int] | tuple[int, int, int]
    normalisation: NormalisationConfig = Field(default_factory=NormalisationConfig)
    crop_mm: float | None = Field(None, gt=0.0, le=1000.0)
    temperature: float = Field(1.0, gt=0.0, le=100.0)
    orientation: str | None = Field(None, pattern="^[RLAPSI]{3}$")

    @property
    def image_size_vox(self) -> tuple[int, int]:
        """The 2D input size (rows, columns).

        Raises:
            ModelError: the model classifies 3D volumes (its input has three sizes).
        """
        if len(self.input_size_vox) != 2:
            raise ModelError(
                f"this model classifies 3D volumes ({self.input_size_vox}), not 2D images; "
                "use it with the mri_klg step or mri_kl.grade_volumes"
            )
        return (self.input_size_vox[0], self.input_size_vox[1])

    @model_validator(mode="after")
    def _check(self) -> ClassificationSpec:
        if not all(0 < n <= MAX_INPUT_SIDE for n in self.input_size_vox):
            raise ValueError(
                f"input_size_vox {self.input_size_vox} must be 1..{MAX_INPUT_SIDE} per axis"
            )
        if (self.orientation is not None) != (len(self.input_size_vox) == 3):
            raise ValueError(
                "a volume classifier (3 input sizes) needs its grid orientation, and a 2D "
                f"one none; found input {self.input_size_vox}, orientation {self.orientation}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names repeat: {self.classes}")
        return self
