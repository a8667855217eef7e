"""Training patches: class-weighted crops and MONAI augmentation, replayable per iteration.

Each iteration's randomness comes from a seed derived from ``(seed, iteration)`` only, so a run
resumed from a checkpoint draws exactly the patches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

MAX_CENTRES_PER_CLASS = 20_000
"""Candidate patch centres kept per class and case (a random subset, to bound memory)."""


def iteration_seed(seed: int, iteration: int, salt: int = 0) -> int:
    """A 32-bit seed that depends only on the run seed, the iteration and a salt."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(iteration), int(salt)])
    return int(ss.generate_state(1)[0])


def default_class_weights(labels: Sequence[npt.NDArray[np.uint8]], classes: int) -> list[float]:
    """Sampling weights per class, favouring small structures (~ 1 / sqrt(voxel fraction))."""
    counts = np.zeros(classes, dtype=np.float64)
    for lab in labels:
        counts += np.bincount(lab.reshape(-1), minlength=classes)[:classes]
    frac = counts / max(counts.sum(), 1.0)
    weights = np.where(frac > 0, 1.0 / np.sqrt(np.maximum(frac, 1e-12)), 0.0)
    weights[0] = min(weights[0], weights[1:].mean() if classes > 1 else 1.0) * 0.5
    return [float(w) for w in weights / weights.sum()]


def class_centres(
    labels: npt.NDArray[np.uint8], classes: int, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    """Flat voxel indices per class (a random subset of at most MAX_CENTRES_PER_CLASS)."""
    flat = labels.reshape(-1)
    out: list[npt.NDArray[np.int64]] = []
    for c in range(classes):
        idx = np.flatnonzero(flat == c)
        if idx.size > MAX_CENTRES_PER_CLASS:
            idx = np.sort(rng.choice(idx, MAX_CENTRES_PER_CLASS, replace=False))
        out.append(idx.astype(np.int64))
    return out


@dataclass
class PatchSampler:
    """Draws augmented training patches from prepared cases.

    Args:
        images: float32 arrays (I, J, K), normalised.
        labels: uint8 arrays (I, J, K).
        patch_size_vox: (pi, pj, pk); 2D mode uses (1, h, w).
        classes: number of label classes.
        class_weights: sampling weight of patch centres per class.
        mode: ``"2d"`` or ``"3d"``.
        augment: apply random spatial and intensity augmentation.
        seed: run seed.
        flip_axis: array axis flipped at random (3D: the left-right axis), or ``None``.
    """

    images: Sequence[npt.NDArray[np.float32]]
    labels: Sequence[npt.NDArray[np.uint8]]
    patch_size_vox: tuple[int, int, int]
    classes: int
    class_weights: Sequence[float]
    mode: Literal["2d", "3d"]
    augment: bool
    seed: int
    flip_axis: int | None = 0

    def __post_init__(self) -> None:
        from monai.transforms.compose import Compose
        from monai.transforms.croppad.dictionary import RandCropByLabelClassesd, SpatialPadd

        rng = np.random.default_rng(self.seed)
        self._centres = [class_centres(lab, self.classes, rng) for lab in self.labels]
        keys = ["image", "label"]
        self._pad = SpatialPadd(keys=keys, spatial_size=self.patch_size_vox, mode="constant")
        self._crop = RandCropByLabelClassesd(
            keys=keys,
            label_key="label",
            spatial_size=self.patch_size_vox,
            ratios=list(self.class_weights),
            num_classes=self.classes,
            num_samples=1,
            indices_key="centres",
            warn=False,
        )
        self._augment = Compose(_augmentations(self.mode, self.flip_axis)) if self.augment else None

    def batch(self, iteration: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches for one iteration.

        Returns:
            image float32 (B, 1, *patch) and label int64 (B, 1, *patch); in 2D mode the
            singleton slice axis is dropped: (B, 1, h, w).
        """
        rng = np.random.default_rng(iteration_seed(self.seed, iteration))
        imgs, labs = [], []
        for n in range(batch_size):
            case = int(rng.integers(len(self.images)))
            item = self._sample(case, iteration_seed(self.seed, iteration, n + 1))
            imgs.append(torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32))
            labs.append(torch.as_tensor(np.asarray(item["label"])).to(torch.int64))
        image = torch.stack(imgs)
        label = torch.stack(labs)
        if self.mode == "2d":
            image, label = image[:, :, 0], label[:, :, 0]
        return image, label

    def _sample(self, case: int, seed: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "image": self.images[case][None],
            "label": self.labels[case][None],
        }
        padded: dict[Any, Any] = dict(self._pad(data))  # type: ignore[arg-type]
        centres: list[npt.NDArray[np.int64]] | None = self._centres[case]
        if padded["image"].shape[1:] != data["image"].shape[1:]:
            centres = None  # padding moved the voxels: let MONAI recompute the centres
        padded["centres"] = centres
        self._crop.set_random_state(seed=seed)
        item = self._crop(padded)[0]
        item.pop("centres", None)
        if self._augment is not None:
            self._augment.set_random_state(seed=(seed + 1) % (2**32))
            item = self._augment(item)
        return {"image": _plain(item["image"]), "label": _plain(item["label"])}


def _plain(x: Any) -> npt.NDArray[Any]:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy() if not hasattr(x, "as_tensor") else x.as_tensor().numpy()
    return np.asarray(x)


def _augmentations(mode: Literal["2d", "3d"], flip_axis: int | None) -> list[Any]:
    from monai.transforms.intensity.dictionary import (
        RandAdjustContrastd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )
    from monai.transforms.spatial.dictionary import RandAffined, RandFlipd

    keys = ["image", "label"]
    spatial: list[Any] = []
    if mode == "3d":
        if flip_axis is not None:  # left <-> right knee
            spatial.append(RandFlipd(keys=keys, spatial_axis=flip_axis, prob=0.5))
        rotate: Any = (0.26, 0.26, 0.26)
    else:
        rotate = (0.0, 0.26, 0.0)  # in-plane only: the slice axis must stay the slice axis
    spatial.append(
        RandAffined(
            keys=keys,
            prob=0.3,
            rotate_range=rotate,
            scale_range=(0.0, 0.1, 0.1) if mode == "2d" else (0.1, 0.1, 0.1),
            mode=("bilinear", "nearest"),
            padding_mode="border",
        )
    )
    intensity = [
        RandScaleIntensityd(keys="image", factors=0.15, prob=0.3),
        RandShiftIntensityd(keys="image", offsets=0.15, prob=0.3),
        RandAdjustContrastd(keys="image", gamma=(0.8, 1.25), prob=0.2),
        RandGaussianSmoothd(keys="image", sigma_x=(0.25, 0.75), prob=0.1),
        RandGaussianNoised(keys="image", std=0.1, prob=0.3),
    ]
    return [*spatial, *intensity]
