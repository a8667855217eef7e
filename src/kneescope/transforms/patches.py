"""Training patches: class-weighted crops and MONAI augmentation, replayable per iteration.

Crops follow MONAI's ``RandCropByLabelClasses`` rule (class drawn by weight, then a voxel of
that class as the patch centre) but slice the prepared arrays directly, so a full-size case
is never copied or wrapped per sample; augmentation is MONAI's, on the patch only.

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

from kneescope.transforms.domain_randomisation import (
    DomainRandomisationConfig,
    crop_blocks,
    draw_contrast,
    normalisation_stats,
    stats_subsample,
    synthesise,
)
from kneescope.transforms.intensity import NormalisationConfig

MAX_CENTRES_PER_CLASS = 20_000
"""Candidate patch centres kept per class and case (a random subset, to bound memory)."""


def iteration_seed(seed: int, iteration: int, salt: int = 0) -> int:
    """A 32-bit seed that depends only on the run seed, the iteration and a salt."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(iteration), int(salt)])
    return int(ss.generate_state(1)[0])


def default_class_weights(labels: Sequence[npt.NDArray[np.uint8]], classes: int) -> list[float]:
    """Sampling weights per class: half ~ 1 / sqrt(voxel fraction) (favours small structures),
    half uniform (bones and far background still get context), background at least 15 %."""
    counts = np.zeros(classes, dtype=np.float64)
    for lab in labels:
        counts += np.bincount(lab.reshape(-1), minlength=classes)[:classes]
    present = counts > 0
    frac = counts / max(counts.sum(), 1.0)
    skewed = np.where(present, 1.0 / np.sqrt(np.maximum(frac, 1e-12)), 0.0)
    skewed /= max(skewed.sum(), 1e-12)
    weights = 0.5 * skewed + 0.5 * present / max(int(present.sum()), 1)
    if classes > 1 and present[0]:
        weights[0] = max(weights[0], 0.15 * weights[1:].sum() / 0.85)
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
        tissues: with ``domain_randomisation``: uint8 tissue maps (I, J, K) on the label
            grids (``kneescope.core.tissues`` values); the images are then not used.
        domain_randomisation: synthesise every patch from the tissue map
            (:mod:`kneescope.transforms.domain_randomisation`) instead of cropping the image;
            ``augment`` then switches its spatial part (rotation, scaling, flips).
        normalisation: how synthesised patches are normalised (as inference would normalise
            the whole synthesised volume).
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
    tissues: Sequence[npt.NDArray[np.uint8]] | None = None
    domain_randomisation: DomainRandomisationConfig | None = None
    normalisation: NormalisationConfig | None = None

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        dr = self.domain_randomisation
        # pad once, so every crop is a plain slice of an array at least the patch size
        self._labels = [_pad_to(lab, self.patch_size_vox) for lab in self.labels]
        self._centres = [class_centres(lab, self.classes, rng) for lab in self._labels]
        self._images: list[npt.NDArray[np.float32]] = []
        self._tissues: list[npt.NDArray[np.uint8]] = []
        self._subsamples: list[npt.NDArray[np.uint8]] = []
        self._augment = None
        if dr is None:
            self._images = [_pad_to(img, self.patch_size_vox) for img in self.images]
            if self.augment:
                from monai.transforms.compose import Compose

                self._augment = Compose(_augmentations(self.mode, self.flip_axis))
            return
        if self.tissues is None or len(self.tissues) != len(self.labels):
            raise ValueError("domain randomisation needs one tissue map per case")
        for tis, lab in zip(self.tissues, self.labels, strict=True):
            if tis.shape != lab.shape:
                raise ValueError(f"tissue map shape {tis.shape} != label shape {lab.shape}")
        self._tissues = [_pad_to(t, self.patch_size_vox) for t in self.tissues]
        self._subsamples = [stats_subsample(t, dr.stats_samples) for t in self.tissues]

    def batch(self, iteration: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches for one iteration.

        Returns:
            image float32 (B, 1, *patch) and label int64 (B, 1, *patch); in 2D mode the
            singleton slice axis is dropped: (B, 1, h, w).
        """
        rng = np.random.default_rng(iteration_seed(self.seed, iteration))
        imgs, labs = [], []
        for n in range(batch_size):
            case = int(rng.integers(len(self._labels)))
            item = self._sample(case, iteration_seed(self.seed, iteration, n + 1))
            imgs.append(torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32))
            labs.append(torch.as_tensor(np.asarray(item["label"])).to(torch.int64))
        image = torch.stack(imgs)
        label = torch.stack(labs)
        if self.mode == "2d":
            image, label = image[:, :, 0], label[:, :, 0]
        return image, label

    def crop_box(self, case: int, rng: np.random.Generator) -> tuple[slice, slice, slice]:
        """A patch box around a voxel of a class drawn with ``class_weights`` (MONAI's
        RandCropByLabelClasses rule: pick the class, then a voxel of it, centre the patch on
        it, shift the patch inside the volume)."""
        centres = self._centres[case]
        weights = np.array(
            [w if len(c) else 0.0 for w, c in zip(self.class_weights, centres, strict=True)]
        )
        if weights.sum() <= 0:
            weights = np.array([1.0 if len(c) else 0.0 for c in centres])
        cls = int(rng.choice(len(weights), p=weights / weights.sum()))
        flat = int(centres[cls][int(rng.integers(len(centres[cls])))])
        shape = self._labels[case].shape
        centre = np.unravel_index(flat, shape)
        box = []
        for c, n, p in zip(centre, shape, self.patch_size_vox, strict=True):
            lo = min(max(0, int(c) - p // 2), n - p)
            box.append(slice(lo, lo + p))
        return (box[0], box[1], box[2])

    def _sample(self, case: int, seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        box = self.crop_box(case, rng)
        if self.domain_randomisation is not None:
            return self._synthesised(case, box, rng)
        item: dict[str, Any] = {
            "image": np.ascontiguousarray(self._images[case][box])[None],
            "label": np.ascontiguousarray(self._labels[case][box])[None],
        }
        if self._augment is not None:
            self._augment.set_random_state(seed=(seed + 1) % (2**32))
            item = self._augment(item)
        return {"image": _plain(item["image"]), "label": _plain(item["label"])}

    def _synthesised(
        self, case: int, box: tuple[slice, slice, slice], rng: np.random.Generator
    ) -> dict[str, Any]:
        """A patch synthesised from the case's tissue map (2D: from a slab of
        ``slab_slices`` slices around the target slice), spatially augmented together with
        its labels, normalised with statistics of the whole case under the same intensity
        model (see :mod:`kneescope.transforms.domain_randomisation`)."""
        dr = self.domain_randomisation
        assert dr is not None
        block, labels = crop_blocks(
            self._tissues[case],
            self._labels[case],
            box,
            dr,
            self.mode,
            self.flip_axis,
            self.augment,
            rng,
        )
        keep = dr.slab_slices // 2 if self.mode == "2d" else None
        contrast = draw_contrast(dr, rng)
        image = synthesise(block, contrast, dr, rng, keep_slice=keep)
        stats = normalisation_stats(
            self._subsamples[case], contrast, self.normalisation or NormalisationConfig(), rng
        )
        return {
            "image": stats.apply_numpy(image)[None],
            "label": np.ascontiguousarray(labels)[None],
        }


def _pad_to(array: npt.NDArray[Any], patch: tuple[int, int, int]) -> npt.NDArray[Any]:
    """Zero-pad ``array`` at the far end of each axis up to ``patch`` (no copy if not needed)."""
    missing = [max(0, p - n) for p, n in zip(patch, array.shape, strict=True)]
    if not any(missing):
        return array
    return np.pad(array, [(0, m) for m in missing])


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
        # in-plane only: MONAI's first angle turns the (1, 2) plane, about axis 0 (the slice
        # axis must stay the slice axis; the second angle would tilt it into axis 2)
        rotate = (0.26, 0.0, 0.0)
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
