"""The :class:`Segmenter`: load a model once, then segment many volumes with bounded memory.

For each input volume: reorient to the model's axis code (permutation and flips only), mirror a
left knee onto right-knee anatomy when the model was trained that way, resample to the model's
spacing if it differs, normalise intensities window by window, run the streaming sliding window
(optionally inside the box a coarse pass found), clean up (medial/lateral pieces by position,
then the largest component of each structure), and map the label map back onto the input's
exact grid (nearest neighbour, integer labels).

The work runs in three phases, so a caller can overlap them across volumes (prepare the next
volume and finish the previous one while the network runs):
``prepared = seg.prepare(image, side)`` (CPU: reorient, resample, intensity statistics),
``raw = seg.infer(prepared)`` (the network's device: windows, stitching, labels on the model's
grid) and ``result = seg.finish(raw)`` (CPU: clean-up, back to the input grid);
``seg.segment(image, side)`` is ``seg.finish(seg.infer(seg.prepare(image, side)))``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from kneescope.config import FROZEN
from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.inference.cascade import coarse_view, foreground_box
from kneescope.inference.cleanup import clean_up_knee
from kneescope.inference.model_grid import ModelGrid, plan_model_grid
from kneescope.inference.predictor import (
    make_predictor,
    resolve_device,
    resolve_precision,
)
from kneescope.inference.segmentation_model import SegmentationModel, load_model, window_problem
from kneescope.inference.streaming import (
    labels_and_probabilities_from_slabs,
    labels_from_slabs,
    stream_slabs,
)
from kneescope.inference.windows import whole_plane_window
from kneescope.memory.release import release_free_memory
from kneescope.models import divisor
from kneescope.transforms.intensity import IntensityStats, intensity_stats

log = logging.getLogger(__name__)


class SegmentConfig(BaseModel):
    """Options of ``kneescope segment``.

    Attributes:
        overlap: window overlap fraction in-plane (axis i uses it too in 3D mode, 0 in 2D).
        sw_batch_size: windows per network call.
        precision: ``"auto"`` (bf16 where the device runs it natively), ``"bf16"``, ``"fp32"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        tta: average with passes flipped along the axes the model was trained flipped on.
        cascade: coarse pass at ``cascade_factor`` x the spacing finds the knee first.
        cascade_factor: down-sampling of the coarse pass (integer).
        cascade_margin_mm: margin around the coarse foreground box, mm.
        cleanup: when the knee's side is known, relabel each piece of a medial/lateral pair
            by the side of the tibia it lies on; then keep only the largest connected
            component of each structure.
        probabilities: also return softmax probabilities (uint8, scaled by 255).
        roi_size_vox: inference window (i, j, k); given, it overrides ``window``.
        window: ``"model"``: the model's window, ``overlap`` in-plane (2D models never
            overlap slices); ``"plane"``: a 2D model runs on whole slices (one window covers
            the plane: no in-plane voxel computed twice, none blended; up to
            :data:`~kneescope.inference.windows.WHOLE_PLANE_VOXELS` voxels a window). Whole
            slices are ~1.8x fewer network voxels on 384 x 384 OAI slices but only for models
            trained on whole slices: the shipped 2D model (trained on 256 x 256 crops) lost
            0.02-0.14 mean truth Dice on held-out knees with them (docs/inference.md).
        sigma_scale: Gaussian blending's sigma as a fraction of the window (in-plane only for
            2D models).
        blend: how overlapping windows are averaged: ``"gaussian"`` (window centres count
            most), ``"constant"`` (a plain mean, MONAI's default) or ``"auto"``: constant for
            2D models, Gaussian for 3D models. For the shipped 2D model constant blending had
            the best truth Dice on 4 held-out development knees (mean 0.879 against 0.870 for
            an in-plane Gaussian; docs/inference.md).
    """

    model_config = FROZEN

    overlap: float = Field(0.25, ge=0.0, lt=1.0)
    sw_batch_size: int = Field(1, ge=1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: str = "auto"
    tta: bool = False
    cascade: bool = False
    cascade_factor: int = Field(2, ge=2, le=8)
    cascade_margin_mm: float = Field(8.0, ge=0.0)
    cleanup: bool = True
    probabilities: bool = False
    roi_size_vox: tuple[int, int, int] | None = None
    window: Literal["model", "plane"] = "model"
    sigma_scale: float = Field(0.125, gt=0.0)
    blend: Literal["auto", "gaussian", "constant"] = "auto"


@dataclass(frozen=True)
class Segmentation:
    """The result for one volume.

    Attributes:
        labels: uint8 label map on the input's grid (same shape and affine).
        probabilities: uint8 (I, J, K, C) softmax x 255 on the input grid, or ``None``.
        seconds: wall time per stage.
        box: region of the model grid the fine pass covered (cascade), else ``None``.
        side: the knee's side used (``"right"``/``"left"``), or ``None`` when unknown.
    """

    labels: Volume
    probabilities: npt.NDArray[np.uint8] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    box: tuple[slice, slice, slice] | None = None
    side: str | None = None


@dataclass(frozen=True)
class Prepared:
    """One volume after :meth:`Segmenter.prepare`.

    Attributes:
        image: the input image (its grid is the output's grid).
        frame: the way from the input grid to the model's working grid and back.
        work: the image on the working grid (I, J, K), the input's dtype (a view when only
            reoriented) or, resampled, uint8/uint16/int16 kept or float32.
        stats: intensity statistics the windows are normalised with.
        side: the knee's side used (``"right"``/``"left"``), or ``None``.
        seconds: wall time so far (``"prepare"``).
    """

    image: Volume
    frame: ModelGrid
    work: npt.NDArray[Any]
    stats: IntensityStats
    side: str | None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RawSegmentation:
    """One volume after :meth:`Segmenter.infer`: the network's labels, before clean-up.

    Attributes:
        image: the input image.
        frame: the way back from the working grid to the input grid.
        labels: uint8 (I, J, K) labels on the working grid.
        probabilities: uint8 (I, J, K, C) softmax x 255 on the working grid, or ``None``.
        box: region of the working grid the fine pass covered (cascade), else ``None``.
        side: the knee's side used, or ``None``.
        seconds: wall time so far (``"prepare"``, ``"infer"``).
    """

    image: Volume
    frame: ModelGrid
    labels: npt.NDArray[np.uint8]
    probabilities: npt.NDArray[np.uint8] | None
    box: tuple[slice, slice, slice] | None
    side: str | None
    seconds: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """Segments volumes with one model, loaded once per process.

    Args:
        model: a loaded model or the path of a model file.
        config: inference options.
    """

    def __init__(self, model: SegmentationModel | Path, config: SegmentConfig | None = None):
        import torch

        loaded = load_model(model) if isinstance(model, Path) else model
        self.config = config or SegmentConfig()
        spec = loaded.spec
        problem = window_problem(self.config.roi_size_vox or spec.roi_size_vox)
        if problem:  # checked before anything is allocated for it
            raise InputError(f"{problem}; choose a smaller --roi")
        self.device = resolve_device(self.config.device)
        self.autocast_dtype = resolve_precision(self.config.precision, self.device)
        self.network = loaded.build(self.device)
        # keep the description, not a second (fp32) copy of the weights
        self.model = SegmentationModel(spec=spec, state_dict={})
        tta_axes = spec.flip_axes if self.config.tta else ()
        if self.config.tta and not tta_axes:
            log.warning("--tta: this model was trained without flips; segmenting without TTA")
        self.predictor = make_predictor(
            self.network,
            mode=spec.mode,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            tta_flip_axes=tta_axes,
        )
        self.roi = self.config.roi_size_vox or spec.roi_size_vox
        div = divisor(spec.network)
        spatial = self.roi[1:] if spec.mode == "2d" else self.roi
        if any(r % d for r, d in zip(spatial, div, strict=True)):
            raise InputError(
                f"window {self.roi} is not a multiple of the network's divisor {div}; "
                "choose another --roi"
            )
        self._torch = torch
        log.info(
            "segmenter: %s model, device %s, precision %s, window %s",
            spec.mode,
            self.device,
            "bf16" if self.autocast_dtype is not None else "fp32",
            self.roi,
        )

    @property
    def precision_name(self) -> str:
        return "bf16" if self.autocast_dtype is not None else "fp32"

    @property
    def blend(self) -> Literal["gaussian", "constant"]:
        """The window blending used: ``config.blend``, or for ``"auto"`` constant for 2D
        models and Gaussian for 3D models (:attr:`SegmentConfig.blend`)."""
        if self.config.blend != "auto":
            return self.config.blend
        return "constant" if self.model.spec.mode == "2d" else "gaussian"

    def segment(self, image: Volume, side: str | None = None) -> Segmentation:
        """Segment one 3D image; the label map has the image's exact shape and affine.

        The same as ``finish(infer(prepare(image, side)))``.

        Args:
            image: the knee image (any orientation; integer or float voxels).
            side: ``"right"``/``"left"`` (also R/L, 1/2); ``None``: the image's DICOM
                Laterality when it has one. Models trained side-canonical need it.
        """
        return self.finish(self.infer(self.prepare(image, side)))

    def prepare(self, image: Volume, side: str | None = None) -> Prepared:
        """Phase 1 (CPU): check the image, resolve the side, reorient (and mirror) it to the
        model's axes, resample it to the model's spacing and take its intensity statistics.

        Args:
            image: the knee image (3D, any orientation; integer or float voxels).
            side: as for :meth:`segment`.

        Returns:
            A :class:`Prepared` holding the working-grid image (a view of ``image`` when no
            resampling is needed).
        """
        if image.ndim != 3:
            raise InputError(f"segmentation needs a 3D image, got shape {image.shape}")
        spec = self.model.spec
        t0 = time.perf_counter()
        side = self._side_of(image, side)
        frame = plan_model_grid(image, spec, side)  # refuses a grid beyond the memory limit
        grid = frame.grid
        plane = grid.target_shape[1:] if spec.mode == "2d" else grid.target_shape
        if min(plane) < 2:
            source = image.metadata.get("source_path", "the image")
            raise InputError(
                f"{source}: a {'x'.join(map(str, image.shape))} image is too small to segment "
                f"(on the model's grid {'x'.join(map(str, grid.target_shape))}; at least 2 "
                "voxels along each axis); check the file"
            )
        arr = frame.to_model_axes(image.array)
        work = arr if grid.is_identity else grid.image_to_target(arr, dtype=_work_dtype(arr.dtype))
        sample = _stats_sample(work)  # all of it is used: exactly intensity_stats(work)
        stats = intensity_stats(sample, spec.normalisation, max_samples=max(1, sample.size))
        return Prepared(
            image=image,
            frame=frame,
            work=work,
            stats=stats,
            side=side,
            seconds={"prepare": time.perf_counter() - t0},
        )

    def infer(self, prepared: Prepared) -> RawSegmentation:
        """Phase 2 (the network's device): the sliding-window pass (inside the coarse pass's
        box with ``cascade``) and the labels on the model's working grid.

        Args:
            prepared: the result of :meth:`prepare` (with this segmenter).

        Returns:
            A :class:`RawSegmentation`: uint8 labels (I, J, K) on the working grid, not
            cleaned up; it does not keep the working-grid image.
        """
        spec = self.model.spec
        t1 = time.perf_counter()
        work = prepared.work
        target_shape = tuple(int(n) for n in work.shape)
        box = None
        if self.config.cascade:
            box = self._coarse_box(work, prepared.stats, prepared.frame.spacing_mm)
        region = work if box is None else work[box]
        lab, prob = self._run(region, prepared.stats, self.config.probabilities)
        labels_t = lab
        probs_t = prob
        if box is not None:  # the whole grid needs no second array
            labels_t = np.zeros(target_shape, dtype=np.uint8)
            labels_t[box] = lab
            if prob is not None:
                probs_t = np.zeros((*target_shape, spec.num_classes), dtype=np.uint8)
                probs_t[..., 0] = 255  # outside the box: background with certainty
                probs_t[box] = prob
        del lab, prob, region
        # the network's freed activations (~130 MB for the 2D model's 8 x 256 x 256 window)
        # go back to the OS before finish allocates: they do not add to the peak RSS
        release_free_memory()
        seconds = dict(prepared.seconds)
        seconds["infer"] = time.perf_counter() - t1
        return RawSegmentation(
            image=prepared.image,
            frame=prepared.frame,
            labels=labels_t,
            probabilities=probs_t,
            box=box,
            side=prepared.side,
            seconds=seconds,
        )

    def finish(self, raw: RawSegmentation) -> Segmentation:
        """Phase 3 (CPU): clean-up on the working grid (medial/lateral pieces by position,
        largest component of each structure) and the labels back on the input's exact grid.

        Args:
            raw: the result of :meth:`infer`; its label map is cleaned in place.

        Returns:
            The :class:`Segmentation`; ``seconds`` has prepare, infer, finish and total.
        """
        spec = self.model.spec
        t2 = time.perf_counter()
        labels_t = raw.labels
        if self.config.cleanup:
            clean_up_knee(
                labels_t,
                names=spec.labels,
                orientation=spec.orientation,
                side=raw.side,
                side_canonical=spec.side_canonical,
            )
        to_source = raw.frame.labels_to_source
        labels = raw.image.with_array(np.ascontiguousarray(to_source(labels_t), dtype=np.uint8))
        probs_src = None
        probs_t = raw.probabilities
        if probs_t is not None:
            channels = [to_source(probs_t[..., c]) for c in range(probs_t.shape[-1])]
            probs_src = np.ascontiguousarray(np.stack(channels, axis=-1))
        seconds = dict(raw.seconds)
        seconds["finish"] = time.perf_counter() - t2
        seconds["total"] = sum(seconds.get(k, 0.0) for k in ("prepare", "infer", "finish"))
        return Segmentation(
            labels=labels, probabilities=probs_src, seconds=seconds, box=raw.box, side=raw.side
        )

    def _side_of(self, image: Volume, side: str | None) -> str | None:
        """The knee's side from the argument or the side recorded with the image (DICOM
        Laterality, kneescope's record in a NIfTI file or its sidecar)."""
        from kneescope.catalog.naming import side_from_text

        given = side if side is not None else image.side
        resolved = side_from_text(str(given)) if given is not None else None
        if side is not None and resolved is None:
            raise InputError(f"side {side!r} is not right or left (R/L, 1/2 also work)")
        if resolved is None and self.model.spec.side_canonical:
            source = image.metadata.get("source_path", "the image")
            raise InputError(
                f"{source}: this model mirrors left knees onto right ones and needs each "
                "knee's side, which the image does not record; pass --side right|left"
            )
        return resolved

    def window_for(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """The inference window (i, j, k) for a working-grid array of ``shape`` (I, J, K):
        ``roi_size_vox`` when given; else, with ``window="plane"``, a 2D model's whole
        slices (see :func:`~kneescope.inference.windows.whole_plane_window`); else the
        model's window."""
        spec = self.model.spec
        if self.config.roi_size_vox is not None or self.config.window == "model":
            return self.roi
        if spec.mode == "2d":
            div = divisor(spec.network)
            plane = whole_plane_window(self.roi, shape, (div[-2], div[-1]))
            if plane is not None:
                return plane
        return self.roi

    def _run(
        self, region: npt.NDArray[Any], stats: IntensityStats, want_probs: bool
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None]:
        spec = self.model.spec
        overlap = (0.0, self.config.overlap, self.config.overlap)
        if spec.mode == "3d":
            overlap = (self.config.overlap,) * 3
        roi = self.window_for(tuple(int(n) for n in region.shape))
        slabs = stream_slabs(
            region[None],
            self.predictor,
            roi_size_vox=roi,
            out_channels=spec.num_classes,
            overlap=overlap,
            sw_batch_size=self.config.sw_batch_size,
            prepare=stats.apply_torch,
            device=self.device,
            sigma_scale=self.config.sigma_scale,
            track_weight=want_probs,
            blend=self.blend,
            slicewise=spec.mode == "2d",
        )
        if want_probs:
            lab, prob = labels_and_probabilities_from_slabs(slabs, region.shape, spec.num_classes)
            return lab, prob
        return labels_from_slabs(slabs, region.shape), None

    def _coarse_box(
        self,
        work: npt.NDArray[Any],
        stats: IntensityStats,
        spacing_mm: tuple[float, float, float],
    ) -> tuple[slice, slice, slice] | None:
        f = self.config.cascade_factor
        if min(work.shape) < 2 * f:
            log.warning("cascade: the image is too small for a coarse pass; segmenting it whole")
            return None
        coarse = coarse_view(work, f)
        labels, _ = self._run(coarse, stats, False)
        margin = [math.ceil(self.config.cascade_margin_mm / s) for s in spacing_mm]
        div = divisor(self.model.spec.network)
        multiple = (1, *div[-2:]) if self.model.spec.mode == "2d" else div
        box = foreground_box(labels, f, work.shape, margin, multiple=multiple)
        if box is None:
            log.warning("cascade: the coarse pass found no knee; segmenting the whole volume")
        return box


STATS_SAMPLES = 500_000
"""Voxels the intensity statistics are taken from (as :func:`intensity_stats`' default)."""


def _stats_sample(work: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The strided voxel sample :func:`~kneescope.transforms.intensity.intensity_stats` takes
    (every ``size // STATS_SAMPLES``-th voxel in C order), gathered from the array as it is:
    the working image is usually a reoriented view of the input (non-contiguous), which
    ``reshape(-1)`` would copy whole (47 MB for a 160x384x384 uint16 knee) to take 0.5 M
    voxels. Statistics of the returned sample are exactly those of ``work``."""
    step = max(1, work.size // STATS_SAMPLES)
    if work.flags.c_contiguous:
        return work.reshape(-1)[::step]
    index = np.unravel_index(np.arange(0, work.size, step), work.shape)
    return work[index]


def _work_dtype(source_dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Resampled images keep a small integer source dtype (rounded: half the memory of
    float32 while windows are cut from them); other sources become float32."""
    if source_dtype.kind in "iu" and source_dtype.itemsize <= 2:
        return source_dtype
    return np.dtype(np.float32)
