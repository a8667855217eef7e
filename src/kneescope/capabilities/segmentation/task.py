"""Segmentation as a training task: class-weighted patches, Dice-CE loss, per-structure Dice.

:class:`SegmentationTask` is what the training engine (:func:`kneescope.training.engine.fit`)
trains; :data:`TRAINING` (entry point ``segmentation`` of the ``kneescope.tasks`` group) builds
it from a training file's task keys (:class:`SegmentationTrainConfig`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.capabilities.segmentation.training_data import (
    Case,
    find_pairs,
    fingerprint,
    load_cases,
    resolve_side_canonical,
    scheme_for,
    split_pairs,
)
from kneescope.capabilities.segmentation.validation import validate
from kneescope.errors import ConfigError
from kneescope.inference.segmentation_model import KIND, ModelSpec, spec_part
from kneescope.models import NetworkConfig, preset
from kneescope.training.task import Metrics, PatchRequest, TaskBatch
from kneescope.transforms.orientation import left_right_axis
from kneescope.transforms.patches import PatchSampler, default_class_weights
from kneescope.workspace import Workspace

if TYPE_CHECKING:
    from kneescope.memory.slabs import SlabLoss

log = logging.getLogger(__name__)


def resolve_network(config: SegmentationTrainConfig, classes: int) -> NetworkConfig:
    """The network config with ``out_channels`` set to the class count."""
    base = preset(config.network) if isinstance(config.network, str) else config.network
    want = 2 if config.mode == "2d" else 3
    if base.spatial_dims != want:
        raise ConfigError(
            f"network {config.network if isinstance(config.network, str) else base.name} is "
            f"{base.spatial_dims}D but mode is {config.mode}; pick a {want}D preset"
        )
    return NetworkConfig.model_validate({**base.model_dump(), "out_channels": classes})


class SegmentationTask:
    """A 2D or 3D segmentation network trained on prepared cases.

    Args:
        config: the task's options.
        train_cases, val_cases: prepared cases (same grid conventions).
        spacing_mm, orientation: the working grid, recorded in the model file.
        side_canonical: the cases show right-knee anatomy (left knees mirrored); no
            left-right flips are then used, and the model file records it.
        seed: the run seed (patch sampling and augmentation).
    """

    kind = KIND

    def __init__(
        self,
        config: SegmentationTrainConfig,
        train_cases: Sequence[Case],
        val_cases: Sequence[Case],
        *,
        spacing_mm: tuple[float, float, float],
        orientation: str,
        side_canonical: bool = False,
        seed: int = 0,
    ) -> None:
        if not train_cases:
            raise ConfigError("no training cases; add image/label pairs or lower val_fraction")
        self.config = config
        self.train_cases, self.val_cases = list(train_cases), list(val_cases)
        self.spacing_mm, self.orientation = spacing_mm, orientation
        self.side_canonical, self.seed = side_canonical, seed
        self.scheme = scheme_for(config.labels)
        self.classes = len(self.scheme.labels) + 1
        self.network = resolve_network(config, self.classes)
        self.data_fingerprint = fingerprint([*self.train_cases, *self.val_cases])
        self.train_size, self.val_size = len(self.train_cases), len(self.val_cases)
        weights = config.class_weights or default_class_weights(
            [c.labels for c in self.train_cases], self.classes
        )
        if len(weights) != self.classes:
            raise ConfigError(f"class_weights needs {self.classes} values, got {len(weights)}")
        self.class_weights = list(weights)
        self.patch_size_vox = config.patch_size_vox
        self._sampler: PatchSampler | None = None
        from monai.losses.dice import DiceCELoss

        self._loss = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=False)

    def patch_request(self) -> PatchRequest:
        """Case shape and patch in network dims (2D: the in-slice axes)."""
        shape = tuple(int(n) for n in self.train_cases[0].image.shape)
        patch = self.config.patch_size_vox
        if self.config.mode == "2d":
            return PatchRequest(shape[1:], None if patch is None else patch[1:], (128, 128), 8)
        return PatchRequest(shape, patch, (64, 64, 64), 2)

    def use_patch_size(self, patch_size_vox: tuple[int, ...]) -> None:
        """Train on ``patch_size_vox`` (network dims) from now on."""
        full = (1, *patch_size_vox) if self.config.mode == "2d" else tuple(patch_size_vox)
        self.patch_size_vox = (int(full[0]), int(full[1]), int(full[2]))
        self._sampler = None

    def _patches(self) -> PatchSampler:
        if self._sampler is None:
            if self.patch_size_vox is None:
                raise ConfigError("no patch size: set patch_size_vox or let the planner pick")
            self._sampler = PatchSampler(
                images=[c.image for c in self.train_cases],
                labels=[c.labels for c in self.train_cases],
                patch_size_vox=self.patch_size_vox,
                classes=self.classes,
                class_weights=self.class_weights,
                mode=self.config.mode,
                augment=self.config.augment,
                seed=self.seed,
                flip_axis=None if self.side_canonical else left_right_axis(self.orientation),
                tissues=self._train_tissues(),
                domain_randomisation=self.config.domain_randomisation,
                normalisation=self.config.normalisation,
            )
        return self._sampler

    def _train_tissues(self) -> list[npt.NDArray[np.uint8]] | None:
        if self.config.domain_randomisation is None:
            return None
        maps = [c.tissues for c in self.train_cases]
        missing = [c.name for c, m in zip(self.train_cases, maps, strict=True) if m is None]
        if missing:
            raise ConfigError(
                f"domain_randomisation needs a tissue map per training case; {missing[0]} has none"
            )
        return [m for m in maps if m is not None]

    def batch(self, index: int, size: int) -> TaskBatch:
        """Patches ``(B, 1, *patch)`` float32 and labels ``(B, 1, *patch)`` int64."""
        image, label = self._patches().batch(index, size)
        return TaskBatch(inputs=image, targets=label)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Dice + cross-entropy (Dice per sample and class, then the mean)."""
        value: torch.Tensor = self._loss(outputs, targets)
        return value

    def slab_loss(self) -> SlabLoss:
        """:meth:`loss` in slab form, for the engine's slab steps (``slab_vox``)."""
        from kneescope.memory.slabs import DiceCESlabLoss

        return DiceCESlabLoss()

    @property
    def roi_size_vox(self) -> tuple[int, int, int]:
        roi = self.config.roi_size_vox or self.patch_size_vox
        if roi is None:
            raise ConfigError("no inference window: set roi_size_vox or patch_size_vox")
        return roi

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        """Mean Dice per structure over the validation cases; the score is the mean Dice
        over structures present."""
        return self._validate(network, device, surface=False)

    def evaluate_final(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        """:meth:`evaluate` plus the symmetric average surface distance (mm) per structure."""
        return self._validate(network, device, surface=True)

    def _validate(self, network: torch.nn.Module, device: torch.device, surface: bool) -> Metrics:
        dtype = torch.get_autocast_dtype(device.type)
        scores = validate(
            network,
            self.val_cases,
            classes=self.classes,
            mode=self.config.mode,
            roi_size_vox=self.roi_size_vox,
            autocast_dtype=dtype if torch.is_autocast_enabled(device.type) else None,
            device=device,
            spacing_mm=self.spacing_mm if surface else None,
        )
        finite = [d for d in scores["dice"] if d == d]
        mean = sum(finite) / len(finite) if finite else math.nan
        return Metrics(score=mean, values={**scores, "dice_mean": mean})

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        """Labels, grid, normalisation, window and flips (a :class:`ModelSpec` without the
        envelope's fields), and the training record (config, cases, validation)."""
        spec = ModelSpec(
            network=self.network,
            mode=self.config.mode,
            labels=dict(self.scheme.labels),
            label_scheme=self.scheme.name,
            spacing_mm=self.spacing_mm,
            orientation=self.orientation,
            normalisation=self.config.normalisation,
            roi_size_vox=self.roi_size_vox,
            flip_axes=() if self.side_canonical else self._trained_flips(),
            side_canonical=self.side_canonical,
            data_fingerprint=self.data_fingerprint,
        )
        validation = {} if metrics is None else {k: v for k, v in metrics.values.items()}
        validation.pop("dice_mean", None)
        return {
            **spec_part(spec),
            "training": {
                "config": self.config.model_dump(mode="json"),
                "train_cases": [c.name for c in self.train_cases],
                "val_cases": [c.name for c in self.val_cases],
                "validation": validation,
            },
        }

    def _trained_flips(self) -> tuple[int, ...]:
        axis = left_right_axis(self.orientation)
        if self.config.augment and self.config.mode == "3d" and axis is not None:
            return (axis,)
        return ()


def with_dataset_labels(config: SegmentationTrainConfig, base_dir: Path) -> SegmentationTrainConfig:
    """``config`` with ``label_remap`` matching an nnU-Net dataset's label names to the
    training scheme, when ``data_dir`` is such a dataset and no ``label_remap`` was given."""
    from kneescope.capabilities.segmentation.nnunet_data import (
        dataset_folder,
        label_remap_by_name,
        read_training_dataset,
    )

    folder = dataset_folder(config, base_dir)
    if folder is None or config.label_remap is not None:
        return config
    table = label_remap_by_name(read_training_dataset(folder, config), config.labels)
    return config if table is None else config.model_copy(update={"label_remap": table})


class SegmentationTraining:
    """The ``kneescope.tasks`` entry ``segmentation``: a task from a training file's keys."""

    config_type = SegmentationTrainConfig

    def build(
        self, config: SegmentationTrainConfig, *, workspace: Workspace, seed: int, base_dir: Path
    ) -> SegmentationTask:
        """Find the pairs (folder or catalog), split them, prepare the cases."""
        pairs = find_pairs(config, workspace, base_dir)
        config = with_dataset_labels(config, base_dir)
        tr, val = split_pairs(pairs, config.val_fraction, seed)
        log.info("training on %d pairs, validating on %d", len(tr), len(val))
        canonical = resolve_side_canonical(config, [p.side for p in [*tr, *val]])
        cases, spacing, orientation = load_cases([*tr, *val], config, side_canonical=canonical)
        return SegmentationTask(
            config,
            cases[: len(tr)],
            cases[len(tr) :],
            spacing_mm=spacing,
            orientation=orientation,
            side_canonical=canonical,
            seed=seed,
        )


TRAINING = SegmentationTraining()
"""The entry point object (``kneescope.tasks``: ``segmentation``)."""
