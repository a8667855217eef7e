"""Training task for a 3D volume classifier (e.g. the KL grade from a whole knee MRI).

Train it with the engine (:func:`kneescope.training.engine.fit`: checkpoints, exact resume,
schedule, early stopping); the model file is of kind ``classification`` with a 3D
``input_size_vox`` and the grid's ``orientation`` (:mod:`.spec`), calibrated by temperature
scaling on the validation set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from kneescope.capabilities.classification.grade_metrics import ordinal_targets
from kneescope.capabilities.classification.sampling import batch_indices
from kneescope.capabilities.classification.spec import KIND, ClassificationSpec
from kneescope.capabilities.classification.task import calibrated_metrics
from kneescope.capabilities.classification.volume_data import VolumeClassificationData
from kneescope.errors import ConfigError, InputError, ModelError
from kneescope.models import NetworkConfig
from kneescope.models.model_file import load_model_file
from kneescope.training.task import Metrics, TaskBatch
from kneescope.transforms.intensity import NormalisationConfig


def volume_fingerprint(*sets: VolumeClassificationData) -> str:
    """16-hex-digit SHA-256 of the volumes, labels and class names of ``sets``."""
    from kneescope.capabilities.classification.task import arrays_fingerprint

    return arrays_fingerprint([(d.volumes, d.labels, d.classes) for d in sets])


def _check(data: VolumeClassificationData, classes: tuple[str, ...], what: str) -> None:
    if len(data.labels) == 0:
        raise InputError(f"the {what} set is empty; give at least one volume")
    if tuple(data.classes) != classes:
        raise InputError(f"the {what} set's classes {data.classes} differ from {classes}")
    if data.labels.min() < 0 or data.labels.max() >= len(classes):
        raise InputError(f"the {what} set has labels outside 0..{len(classes) - 1}")


class VolumeClassificationTask:
    """Whole-volume classification as a :class:`~kneescope.training.task.TrainingTask`.

    Batches: inputs ``(B, 1, D, H, W)`` float32 (prepared volumes, randomly shifted by up to
    ``shift_vox`` voxels per axis with zero fill, contrast and offset each uniform in
    ``+-intensity``), targets ``(B,)`` int64. Outputs ``(B, classes)`` logits. Validation
    metrics as the 2D task's (:func:`~.task.calibrated_metrics`: accuracy, quadratic kappa,
    AUC(>= 2), temperature, ECE).

    Args:
        network: a 3D classifier (``resnet``, ``spatial_dims = 3``, one output per class).
        train: training volumes.
        validation: validation volumes (same grid and classes).
        orientation: the grid's axis code the volumes were prepared in (model file).
        normalisation: the normalisation they were prepared with (model file).
        loss: ``"ordinal"`` (soft targets on neighbouring grades) or ``"cross_entropy"``.
        ordinal_sigma: width of the ordinal soft targets, in grades.
        balanced_sampling: draw training volumes class-balanced.
        seed: seeds sampling and augmentation.
        init_path: a ``classification`` model file of the same network whose weights start
            the training (a second stage, fine-tuning); ``None``: fresh weights.

    Raises:
        InputError: empty sets, or sets whose classes or grids differ.
        ConfigError: a network that is not a 3D classifier for these classes.
    """

    kind: str = KIND

    def __init__(
        self,
        network: NetworkConfig,
        train: VolumeClassificationData,
        validation: VolumeClassificationData,
        *,
        orientation: str,
        normalisation: NormalisationConfig | None = None,
        loss: Literal["ordinal", "cross_entropy"] = "ordinal",
        ordinal_sigma: float = 0.5,
        balanced_sampling: bool = True,
        shift_vox: int = 4,
        intensity: float = 0.1,
        seed: int = 0,
        init_path: Path | None = None,
    ) -> None:
        self.classes = tuple(train.classes)
        _check(train, self.classes, "training")
        _check(validation, self.classes, "validation")
        if train.volumes.shape[1:] != validation.volumes.shape[1:]:
            raise InputError(
                f"training volumes {train.volumes.shape[1:]} and validation volumes "
                f"{validation.volumes.shape[1:]} are on different grids; prepare both alike"
            )
        if (
            network.name != "resnet"
            or network.spatial_dims != 3
            or network.out_channels != len(self.classes)
        ):
            raise ConfigError(
                f"a volume classifier needs a 3D resnet with {len(self.classes)} outputs, "
                f"found {network.name} ({network.spatial_dims}D, {network.out_channels} "
                "outputs); fix the network"
            )
        self.network = network
        self.orientation = orientation
        self.normalisation = normalisation or NormalisationConfig()
        self.seed = seed
        self.init_path = init_path
        self.shift_vox = shift_vox
        self.intensity = intensity
        self.balanced_sampling = balanced_sampling
        self.loss_name = loss
        self.ordinal_sigma = ordinal_sigma
        self.grid_vox = tuple(int(n) for n in train.volumes.shape[1:])
        self.data_fingerprint = volume_fingerprint(train, validation)
        self.train_size = len(train.labels)
        self.val_size = len(validation.labels)
        self._train_x = torch.from_numpy(np.ascontiguousarray(train.volumes, dtype=np.float32))
        self._train_y = torch.from_numpy(np.asarray(train.labels, dtype=np.int64))
        self._val_x = torch.from_numpy(np.ascontiguousarray(validation.volumes, dtype=np.float32))
        self._val_y = torch.from_numpy(np.asarray(validation.labels, dtype=np.int64))
        self._by_class = [np.flatnonzero(train.labels == k) for k in range(len(self.classes))]
        self._soft = (
            torch.from_numpy(ordinal_targets(len(self.classes), ordinal_sigma))
            if loss == "ordinal"
            else None
        )

    def _indices(self, rng: np.random.Generator, size: int) -> np.ndarray[Any, Any]:
        return batch_indices(rng, size, self.train_size, self._by_class, self.balanced_sampling)

    def batch(self, index: int, size: int) -> TaskBatch:
        """Global batch ``index``: ``size`` training volumes drawn with a seeded generator."""
        rng = np.random.default_rng((self.seed % 2**32, index))
        picks = self._indices(rng, size)
        inputs = torch.zeros((size, 1, *self.grid_vox), dtype=torch.float32)
        for row, pick in enumerate(picks):
            shifts = rng.integers(-self.shift_vox, self.shift_vox + 1, size=3)
            src, dst = [], []
            for n, s in zip(self.grid_vox, shifts, strict=True):
                s = int(s)
                src.append(slice(max(0, -s), n - max(0, s)))
                dst.append(slice(max(0, s), n - max(0, -s)))
            volume = self._train_x[int(pick)]
            contrast = 1.0 + rng.uniform(-self.intensity, self.intensity)
            offset = rng.uniform(-self.intensity, self.intensity)
            inputs[row, 0][tuple(dst)] = volume[tuple(src)] * contrast + offset
        return TaskBatch(inputs=inputs, targets=self._train_y[torch.from_numpy(picks)])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (against ordinal soft targets for ``"ordinal"``), the batch mean."""
        if self._soft is None:
            return torch.nn.functional.cross_entropy(outputs.float(), targets)
        soft = self._soft.to(outputs.device)[targets]
        return torch.nn.functional.cross_entropy(outputs.float(), soft)

    def logits(self, network: torch.nn.Module, device: torch.device) -> torch.Tensor:
        """``(N, classes)`` float32 logits of the validation volumes (one at a time)."""
        was_training = network.training
        network.eval()
        out = []
        with torch.no_grad():
            for volume in self._val_x:
                out.append(network(volume[None, None].to(device)).float().cpu())
        network.train(was_training)
        return torch.cat(out)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        """Accuracy, quadratic kappa, AUC(>= 2), temperature and ECE on the validation set."""
        return calibrated_metrics(self.logits(network, device), self._val_y, len(self.classes))

    def initialise(self, network: torch.nn.Module) -> None:
        """Start from ``init_path``'s weights, if given.

        Raises:
            ModelError: the file is missing, of another kind, or of another network.
        """
        if self.init_path is None:
            return
        start = load_model_file(self.init_path, kind=KIND)
        if start.network != self.network:
            raise ModelError(
                f"{self.init_path}: its network ({start.network.name}, features "
                f"{start.network.features}) is not the one being trained; start from a model "
                "of the same network"
            )
        network.load_state_dict(start.state_dict)

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        """The ``classification`` spec: classes, 3D grid, orientation, normalisation and the
        temperature fitted on the validation set."""
        value = None if metrics is None else metrics.values.get("temperature")
        temperature = float(value) if isinstance(value, int | float) else 1.0
        spec = ClassificationSpec(
            classes=self.classes,
            input_size_vox=(self.grid_vox[0], self.grid_vox[1], self.grid_vox[2]),
            normalisation=self.normalisation,
            temperature=temperature,
            orientation=self.orientation,
        )
        training = {
            "task_config": {
                "loss": self.loss_name,
                "ordinal_sigma": self.ordinal_sigma,
                "balanced_sampling": self.balanced_sampling,
                "shift_vox": self.shift_vox,
                "intensity": self.intensity,
                "init_weights": None if self.init_path is None else str(self.init_path),
                "train_volumes": self.train_size,
                "validation_volumes": self.val_size,
            }
        }
        return {**spec.model_dump(mode="json"), "training": training}
