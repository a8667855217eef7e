"""The landmark training task: heat-map regression of named points on 2D images.

Train it with the engine (:func:`kneescope.training.engine.fit`); the model file it writes
is of kind ``landmarks`` (:mod:`kneescope.capabilities.landmarks.spec`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from kneescope.capabilities.landmarks.config import LandmarkConfig, SyntheticLandmarkSource
from kneescope.capabilities.landmarks.heatmaps import decode_heatmaps, heatmap_loss, sigma_vox
from kneescope.capabilities.landmarks.spec import KIND, LandmarkSpec
from kneescope.capabilities.landmarks.synthetic import LandmarkData, synthetic_landmarks
from kneescope.errors import ConfigError, InputError
from kneescope.models import NetworkConfig
from kneescope.training.task import Metrics, TaskBatch
from kneescope.transforms.image_batch import normalise_images
from kneescope.workspace import Workspace

EVAL_CHUNK = 32
"""Images per forward pass during evaluation."""


def _check_data(
    data: LandmarkData, landmarks: tuple[str, ...], spacing_mm: tuple[float, float], what: str
) -> None:
    if data.images.shape[0] == 0:
        raise InputError(f"the {what} set is empty; give at least one image")
    if tuple(data.landmarks) != landmarks:
        raise InputError(f"the {what} set's landmarks {data.landmarks} differ from {landmarks}")
    if not np.allclose(data.spacing_mm, spacing_mm, rtol=1e-4, atol=0.0):
        raise InputError(
            f"the {what} set's pixel spacing {data.spacing_mm} mm differs from {spacing_mm} mm; "
            "resample the images first"
        )
    if not np.isfinite(data.positions_mm).all():
        raise InputError(f"the {what} set has missing (NaN) landmark positions")
    extent_mm = (np.asarray(data.images.shape[1:], dtype=np.float64) - 0.5) * spacing_mm
    lowest_mm = -0.5 * np.asarray(spacing_mm, dtype=np.float64)
    if (data.positions_mm < lowest_mm).any() or (data.positions_mm > extent_mm).any():
        raise InputError(
            f"the {what} set has landmark positions outside their images; positions are mm "
            "from the centre of the first pixel, (row, column)"
        )


def data_fingerprint(*sets: LandmarkData) -> str:
    """16-hex-digit SHA-256 of the images, positions, names and spacings of ``sets``."""
    digest = hashlib.sha256()
    for data in sets:
        digest.update(repr((data.images.shape, data.landmarks, data.spacing_mm)).encode())
        digest.update(np.ascontiguousarray(data.images, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(data.positions_mm, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


class LandmarkTask:
    """Landmark heat-map regression as a :class:`~kneescope.training.task.TrainingTask`.

    Batches: inputs ``(B, 1, rows, columns)`` float32 (each image normalised by its own
    statistics), targets ``(B, landmarks, 2)`` float32 (row, column) positions in pixels.
    Network outputs ``(B, landmarks, rows, columns)`` logit maps. Validation metrics:
    ``mean_error_mm`` (its negative is the score), ``median_error_mm``,
    ``error_mm`` per landmark, ``success_rate`` (share within ``success_radius_mm``).

    Args:
        config: the task settings (its ``landmarks`` and ``spacing_mm``, when given, must be
            the data's).
        train: training images and landmark positions.
        validation: held-out images and landmark positions.
        seed: seeds batch sampling.

    Raises:
        InputError: empty sets, or landmarks or spacing that differ from the config.
        ConfigError: a network that does not fit the landmarks.
    """

    kind: str = KIND

    def __init__(
        self,
        config: LandmarkConfig,
        train: LandmarkData,
        validation: LandmarkData,
        *,
        seed: int = 0,
    ) -> None:
        self.landmarks: tuple[str, ...] = tuple(config.landmarks) or tuple(train.landmarks)
        self.spacing_mm: tuple[float, float] = config.spacing_mm or train.spacing_mm
        _check_data(train, self.landmarks, self.spacing_mm, "training")
        _check_data(validation, self.landmarks, self.spacing_mm, "validation")
        self.config = config
        self.seed = seed
        try:
            self.network: NetworkConfig = config.network_config(len(self.landmarks))
        except ValueError as exc:
            raise ConfigError(f"{exc}; fix the network or the landmarks") from None
        self.data_fingerprint = data_fingerprint(train, validation)
        self.train_size = train.images.shape[0]
        self.val_size = validation.images.shape[0]
        size, norm = config.input_size_vox, config.normalisation
        spacing = np.asarray(self.spacing_mm, dtype=np.float64)
        self._train_x = torch.from_numpy(normalise_images(train.images, size, norm))
        self._train_y = torch.from_numpy((train.positions_mm / spacing).astype(np.float32))
        self._val_x = torch.from_numpy(normalise_images(validation.images, size, norm))
        self._val_mm = torch.from_numpy(validation.positions_mm.astype(np.float64))
        self._sigma_vox = sigma_vox(config.heatmap_sigma_mm, self.spacing_mm)

    def batch(self, index: int, size: int) -> TaskBatch:
        """Global batch ``index``: ``size`` training images drawn with a seeded generator."""
        rng = np.random.default_rng((self.seed % 2**32, index))
        picks = torch.from_numpy(rng.integers(0, self.train_size, size=size))
        return TaskBatch(inputs=self._train_x[picks], targets=self._train_y[picks])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Heat-map cross-entropy, the mean over the batch and the landmarks."""
        return heatmap_loss(outputs, targets, self._sigma_vox)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        """Landmark errors in mm on the validation images."""
        was_training = network.training
        network.eval()
        found = []
        with torch.no_grad():
            for start in range(0, self._val_x.shape[0], EVAL_CHUNK):
                logits = network(self._val_x[start : start + EVAL_CHUNK].to(device))
                found.append(decode_heatmaps(logits, self._sigma_vox).cpu())
        network.train(was_training)
        spacing = torch.tensor(self.spacing_mm, dtype=torch.float64)
        predicted_mm = torch.cat(found).double() * spacing
        return landmark_metrics(
            predicted_mm, self._val_mm, self.landmarks, self.config.success_radius_mm
        )

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        """The ``landmarks`` spec: names, input size, spacing, heat-map sigma, normalisation.

        Its ``training`` key (the task config) goes to the model file's training record.
        """
        spec = LandmarkSpec(
            landmarks=self.landmarks,
            input_size_vox=self.config.input_size_vox,
            spacing_mm=self.spacing_mm,
            heatmap_sigma_mm=self.config.heatmap_sigma_mm,
            normalisation=self.config.normalisation,
        )
        training = {"task_config": self.config.model_dump(mode="json")}
        return {**spec.model_dump(mode="json"), "training": training}


def landmark_metrics(
    predicted_mm: torch.Tensor,
    truth_mm: torch.Tensor,
    landmarks: tuple[str, ...],
    success_radius_mm: float,
) -> Metrics:
    """Radial errors of ``(N, L, 2)`` predicted against true positions, both in mm."""
    error = torch.linalg.vector_norm(predicted_mm - truth_mm, dim=-1)  # (N, L) mm
    mean = float(error.mean())
    return Metrics(
        score=-mean,
        values={
            "mean_error_mm": mean,
            "median_error_mm": float(error.median()),
            "error_mm": {name: float(error[:, k].mean()) for k, name in enumerate(landmarks)},
            "success_rate": float((error <= success_radius_mm).double().mean()),
        },
    )


def synthetic_sets(
    source: SyntheticLandmarkSource, size_vox: tuple[int, int], seed: int
) -> tuple[LandmarkData, LandmarkData]:
    """Training and validation sets generated from ``source`` with seeds drawn from ``seed``."""
    train_seed, val_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))

    def generate(n: int, data_seed: int) -> LandmarkData:
        return synthetic_landmarks(
            n,
            landmarks=source.landmarks,
            size_vox=size_vox,
            spacing_mm=source.spacing_mm,
            noise=source.noise,
            seed=data_seed,
        )

    try:
        return generate(source.train, train_seed), generate(source.validation, val_seed)
    except ValueError as exc:
        raise ConfigError(f"synthetic data: {exc}; fix the [data] table") from None


class LandmarkTaskFactory:
    """The ``landmarks`` entry of the ``kneescope.tasks`` group (training files)."""

    config_type: type[BaseModel] = LandmarkConfig

    def build(
        self, config: Any, *, workspace: Workspace, seed: int, base_dir: Path
    ) -> LandmarkTask:
        """The task for a training file's task keys (``config``: a LandmarkConfig).

        Raises:
            ConfigError: no ``[data]`` table, or data that contradicts the config.
        """
        del workspace, base_dir  # synthetic data needs neither
        if not isinstance(config, LandmarkConfig):
            raise TypeError(f"expected a LandmarkConfig, got {type(config).__name__}")
        if config.data is None:
            raise ConfigError(
                "a landmark training file needs a [data] table; "
                'add e.g. [data] source = "synthetic" train = 200'
            )
        train, validation = synthetic_sets(config.data, config.input_size_vox, seed)
        return LandmarkTask(config, train, validation, seed=seed)


FACTORY = LandmarkTaskFactory()
"""The object the ``kneescope.tasks`` entry point ``landmarks`` names."""
