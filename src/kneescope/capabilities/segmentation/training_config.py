"""Segmentation's training options: the task keys of a training file (the engine keys are
:class:`~kneescope.training.engine_config.EngineConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN
from kneescope.models import NetworkConfig
from kneescope.transforms.domain_randomisation import DomainRandomisationConfig
from kneescope.transforms.intensity import NormalisationConfig


class SegmentationTrainConfig(BaseModel):
    """What a segmentation training run needs besides the engine's settings.

    Attributes:
        network: a registry preset name or a full network config (its ``out_channels`` is set
            from the label scheme; ``spatial_dims`` must match ``mode``).
        mode: ``"2d"`` (slice-wise along axis i of the reoriented volume) or ``"3d"``.
        labels: output label scheme, ``"kneescope"`` (10 classes) or ``"oai-zib"`` (5).
        label_remap: source label value -> training label value, applied before the scheme
            (values not listed map to background); ``None``: labels are already in the scheme
            (a kneescope map trained as ``oai-zib`` is converted automatically).
        data_dir: folder of NIfTI pairs (``images/X.nii.gz`` + ``labels/X.nii.gz``), or an
            nnU-Net v2 raw dataset folder (``DatasetNNN_Name`` with ``dataset.json``,
            ``imagesTr/``, ``labelsTr/``; labels matched by name, see
            :mod:`~kneescope.capabilities.segmentation.nnunet_data`); relative to the training
            file's folder; ``None`` takes image/label pairs from the workspace catalog.
        spacing_mm: working spacing (i, j, k); ``None``: the median of the training data.
        orientation: axis code arrays are reoriented to; ``None``: the commonest in the data.
        side_canonical: mirror left knees onto right-knee anatomy before the network (and
            drop left-right flips from the augmentation), so medial and lateral structures keep
            their place; needs every case's side (the catalog's, which ingest takes from OAI
            names or DICOM Laterality, or ``data_dir/sides.csv`` with columns ``name,side``).
            ``None``: on when every side is known.
        patch_size_vox: training patch (i, j, k); 2D uses ``(1, h, w)``; ``None``: planner.
        val_fraction: fraction of cases held out for validation (at least one if > 0).
        augment: random flips, rotations, scaling, intensity changes and noise.
        class_weights: relative sampling weight of patch centres per class (length = classes);
            ``None``: weights that favour small structures.
        normalisation: intensity normalisation.
        roi_size_vox: inference window stored in the model file; ``None``: from the patch.
        domain_randomisation: synthesise every training patch from the case's tissue map
            (``data_dir/tissues/X.nii.gz``, ``kneescope.core.tissues`` values, on the image
            grid) with random tissue intensities, bias, noise, resolution, blur, ghosting and
            Gibbs ringing (:class:`DomainRandomisationConfig`); ``augment`` then switches only
            the spatial augmentation. Validation still uses the images. ``None``: train on
            the images.
    """

    model_config = FROZEN

    network: str | NetworkConfig = "unet3d-small"
    mode: Literal["2d", "3d"] = "3d"
    labels: Literal["kneescope", "oai-zib"] = "kneescope"
    label_remap: dict[int, int] | None = None
    data_dir: Path | None = None
    spacing_mm: tuple[float, float, float] | None = None
    orientation: str | None = None
    side_canonical: bool | None = None
    patch_size_vox: tuple[int, int, int] | None = None
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    augment: bool = True
    class_weights: tuple[float, ...] | None = None
    normalisation: NormalisationConfig = Field(default_factory=NormalisationConfig)
    roi_size_vox: tuple[int, int, int] | None = None
    domain_randomisation: DomainRandomisationConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> SegmentationTrainConfig:
        if self.patch_size_vox is not None and self.mode == "2d" and self.patch_size_vox[0] != 1:
            raise ValueError("2d mode needs patch_size_vox = (1, h, w)")
        if isinstance(self.network, NetworkConfig):
            want = 2 if self.mode == "2d" else 3
            if self.network.spatial_dims != want:
                raise ValueError(f"mode {self.mode} needs a network with spatial_dims {want}")
        if self.domain_randomisation is not None and self.data_dir is None:
            raise ValueError(
                "domain_randomisation needs data_dir (a folder with images/, labels/ and tissues/)"
            )
        return self
