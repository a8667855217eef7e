"""Domain randomisation: training images synthesised from tissue maps (SynthSeg's recipe).

Instead of cropping the rendered image, a training sample is synthesised from the case's
tissue map (``kneescope.core.tissues`` values, uint8): every tissue gets its own intensity,
drawn either around the DESS table (probability ``p_reference``: ``CONTRASTS["dess"]`` times a
lognormal factor plus an additive jitter) or uniformly at random (SynthSeg, Billot et al.,
Medical Image Analysis 2023). Then, each with its own probability: within-tissue texture,
partial-volume blur, a lower resolution along one axis (slice thickness), blur, a smooth
multiplicative bias field, motion ghosting (k-space line phase errors along a phase-encode
axis), Gibbs ringing (k-space truncation) and Rician noise; a random gamma is folded into the
intensity table. The IW-TSE-FS and T1-GRE tables are never used here: they are the
out-of-distribution test.

Normalisation matches inference. Inference normalises a volume with statistics of the whole
volume (:func:`kneescope.transforms.intensity.intensity_stats`, a strided subsample). A
synthesised patch has no whole volume, so :func:`normalisation_stats` applies the sample's
intensity table, texture level and noise level to a fixed strided subsample of the whole
case's tissue map (:func:`stats_subsample`, computed once per case) and takes the same
statistics of that; the patch is normalised with them. Spatial blurs, the bias field (mean 1),
ghosting and Gibbs ringing (both keep the mean) are left out of the statistics.

Everything here is numpy/scipy and replayable: a sample depends only on the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, model_validator

from kneescope.config import FROZEN
from kneescope.core.tissues import CONTRASTS, N_TISSUES

if TYPE_CHECKING:
    from kneescope.transforms.intensity import IntensityStats, NormalisationConfig

Range = tuple[float, float]


class DomainRandomisationConfig(BaseModel):
    """How training images are synthesised from tissue maps (``domain_randomisation`` key).

    Intensities are in units of the DESS fluid signal (``CONTRASTS["dess"]``, fluid = 1).
    ``p_reference = 1`` with the jitters 0 and every other ``p_*`` 0 is "DESS only": the
    DESS table looked up per tissue.

    Attributes:
        p_reference: probability that tissue intensities are drawn around the DESS table;
            otherwise each tissue's intensity is uniform in [0, 1] (SynthSeg).
        reference_log_sigma: std of the lognormal factor on each DESS value.
        reference_jitter: std of the additive jitter on each DESS value.
        p_gamma, gamma_log_sigma: a gamma ``exp(N(0, sigma))`` on the intensity table.
        p_texture, texture_std: within-tissue variation: smooth Gaussian texture with a std per
            tissue uniform in [0, texture_std].
        texture_sigma_vox: smoothing of the texture (voxels), uniform in this range per
            sample (fine grain to the coarse blotches of the renderer's marrow).
        p_partial_volume, partial_volume_sigma_vox: a small blur of tissue boundaries.
        p_resolution, resolution_factor: a lower resolution along one random axis (in 2D
            training axis 0 is the slice thickness): blurred with the slice profile, sampled
            every ``factor`` voxels and interpolated back (linear).
        p_blur, blur_sigma_vox: isotropic Gaussian blur.
        p_bias, bias_log_sigma, bias_terms: smooth multiplicative bias field: ``exp`` of
            the lowest ``bias_terms`` cosines per axis with random weights (log std about
            ``bias_log_sigma``), scaled to mean 1.
        p_ghosting, ghosting_shift_vox, ghosting_lines: motion: a fraction (uniform in
            ``ghosting_lines``) of phase-encode lines get a random shift ~ N(0, shift) voxels
            along the read-out axis (a k-space phase ramp); the centre line is kept.
        p_gibbs, gibbs_keep: Gibbs ringing: k-space truncated along one in-plane axis to a
            kept fraction uniform in ``gibbs_keep``.
        p_noise, noise_std: Rician noise of a std uniform in ``noise_std``.
        p_spatial, rotate_rad, scale: random rotation (2D: in-plane) and scaling of tissues
            and labels (nearest neighbour), when the training config's ``augment`` is on.
        slab_slices: 2D training synthesises a slab of this many slices around the target
            slice (odd), so slice thickness and blur have neighbours.
        stats_samples: voxels of the tissue-map subsample that normalisation statistics are
            computed from.
    """

    model_config = FROZEN

    p_reference: float = Field(0.5, ge=0.0, le=1.0)
    reference_log_sigma: float = Field(0.25, ge=0.0)
    reference_jitter: float = Field(0.05, ge=0.0)
    p_gamma: float = Field(0.3, ge=0.0, le=1.0)
    gamma_log_sigma: float = Field(0.3, ge=0.0)
    p_texture: float = Field(0.7, ge=0.0, le=1.0)
    texture_std: float = Field(0.06, ge=0.0)
    texture_sigma_vox: Range = (0.5, 6.0)
    p_partial_volume: float = Field(0.5, ge=0.0, le=1.0)
    partial_volume_sigma_vox: Range = (0.3, 0.8)
    p_resolution: float = Field(0.3, ge=0.0, le=1.0)
    resolution_factor: Range = (1.0, 3.0)
    p_blur: float = Field(0.2, ge=0.0, le=1.0)
    blur_sigma_vox: Range = (0.3, 1.0)
    p_bias: float = Field(0.6, ge=0.0, le=1.0)
    bias_log_sigma: float = Field(0.3, ge=0.0)
    bias_terms: int = Field(4, ge=2)
    p_ghosting: float = Field(0.15, ge=0.0, le=1.0)
    ghosting_shift_vox: float = Field(2.0, ge=0.0)
    ghosting_lines: Range = (0.05, 0.3)
    p_gibbs: float = Field(0.15, ge=0.0, le=1.0)
    gibbs_keep: Range = (0.3, 0.8)
    p_noise: float = Field(0.9, ge=0.0, le=1.0)
    noise_std: Range = (0.0, 0.1)
    p_spatial: float = Field(0.5, ge=0.0, le=1.0)
    rotate_rad: float = Field(0.26, ge=0.0)
    scale: float = Field(0.1, ge=0.0, lt=1.0)
    slab_slices: int = Field(7, ge=1)
    stats_samples: int = Field(100_000, ge=1000)

    @model_validator(mode="after")
    def _check(self) -> DomainRandomisationConfig:
        for name in (
            "texture_sigma_vox",
            "partial_volume_sigma_vox",
            "resolution_factor",
            "blur_sigma_vox",
            "ghosting_lines",
            "gibbs_keep",
            "noise_std",
        ):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} needs 0 <= low <= high, got ({lo}, {hi})")
        if self.resolution_factor[0] < 1.0:
            raise ValueError("resolution_factor must be >= 1")
        if not (self.gibbs_keep[0] > 0.0 and self.gibbs_keep[1] <= 1.0):
            raise ValueError("gibbs_keep must lie in (0, 1]")
        if self.ghosting_lines[1] > 1.0:
            raise ValueError("ghosting_lines must lie in [0, 1]")
        if self.slab_slices % 2 == 0:
            raise ValueError("slab_slices must be odd (the target slice in the middle)")
        return self


@dataclass(frozen=True)
class DrawnContrast:
    """The per-sample intensity model shared by the patch and its normalisation statistics.

    Attributes:
        table: float32 (N_TISSUES,) intensity per tissue (gamma applied).
        texture_std: float32 (N_TISSUES,) within-tissue std per tissue.
        noise_std: Rician noise std (0: none).
    """

    table: npt.NDArray[np.float32]
    texture_std: npt.NDArray[np.float32]
    noise_std: float


def draw_contrast(config: DomainRandomisationConfig, rng: np.random.Generator) -> DrawnContrast:
    """Draw one sample's tissue intensities, texture levels and noise level."""
    n = N_TISSUES
    if rng.random() < config.p_reference:
        table = CONTRASTS["dess"].astype(np.float64) * np.exp(
            rng.normal(0.0, config.reference_log_sigma, n)
        ) + rng.normal(0.0, config.reference_jitter, n)
        table = np.maximum(table, 0.0)
    else:
        table = rng.uniform(0.0, 1.0, n)
    if rng.random() < config.p_gamma:
        gamma = float(np.exp(rng.normal(0.0, config.gamma_log_sigma)))
        top = max(float(table.max()), 1e-6)
        table = top * (table / top) ** gamma
    texture = np.zeros(n)
    if rng.random() < config.p_texture:
        texture = rng.uniform(0.0, config.texture_std, n)
    noise = 0.0
    if rng.random() < config.p_noise:
        noise = float(rng.uniform(*config.noise_std))
    return DrawnContrast(table.astype(np.float32), texture.astype(np.float32), noise)


def stats_subsample(tissues: npt.NDArray[np.uint8], max_samples: int) -> npt.NDArray[np.uint8]:
    """The fixed subsample of a whole case's tissue map that statistics are computed from:
    inference's stride (``intensity_stats``: every ``size // 500_000``-th voxel), thinned
    evenly to at most ``max_samples`` voxels. Returns a 1D uint8 copy."""
    flat = np.asarray(tissues).reshape(-1)
    sample = flat[:: max(1, flat.size // 500_000)]
    step = -(-sample.size // max_samples)
    return np.ascontiguousarray(sample[::step])


def normalisation_stats(
    subsample: npt.NDArray[np.uint8],
    contrast: DrawnContrast,
    normalisation: NormalisationConfig,
    rng: np.random.Generator,
) -> IntensityStats:
    """Inference's statistics (:func:`intensity_stats` with ``normalisation``) of the tissue
    subsample under ``contrast``: intensity table, per-voxel texture (independent voxels:
    the subsample is sparse) and Rician noise."""
    from kneescope.transforms.intensity import intensity_stats

    values = contrast.table[subsample]
    if contrast.texture_std.any():
        values = values + contrast.texture_std[subsample] * rng.standard_normal(
            subsample.size, dtype=np.float32
        )
    values = _rician(values, contrast.noise_std, rng)
    return intensity_stats(values, normalisation, max_samples=max(values.size, 1))


def crop_blocks(
    tissues: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    box: tuple[slice, slice, slice],
    config: DomainRandomisationConfig,
    mode: Literal["2d", "3d"],
    flip_axis: int | None,
    augment: bool,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The tissue and label blocks of a patch ``box``, randomly rotated, scaled (and in 3D
    flipped along ``flip_axis``) about the box centre when ``augment``.

    Voxels are taken from the whole case (nearest neighbour), so a rotated patch shows the
    tissue around the box, not replicated edges; only the case's own border is replicated.
    2D mode rotates within slices only, and the tissue block is a slab of
    ``config.slab_slices`` slices centred on the box's slice (rows beyond the case repeat
    its first or last slice); the label block is the box itself.

    Args:
        tissues, labels: uint8 (I, J, K) arrays of the case, same shape.
        box: the patch, as slices of the case.

    Returns:
        tissue block (S, h, w) (2D: S = slab_slices; 3D: the box shape) and label block
        (box shape), uint8.
    """
    half = config.slab_slices // 2 if mode == "2d" else 0
    rows = np.arange(box[0].start - half, box[0].stop + half)
    matrix = np.eye(3)
    changed = False
    if augment and mode == "3d" and flip_axis is not None and rng.random() < 0.5:
        matrix[flip_axis, flip_axis] = -1.0
        changed = True
    if augment and rng.random() < config.p_spatial:
        lo, hi = 1.0 - config.scale, 1.0 + config.scale
        if mode == "2d":
            a = rng.uniform(-config.rotate_rad, config.rotate_rad)
            rot = np.eye(3)
            rot[1:, 1:] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
            zoom = np.diag([1.0, *rng.uniform(lo, hi, 2)])
        else:
            rot = np.eye(3)
            for p, q in ((1, 2), (0, 2), (0, 1)):
                a = rng.uniform(-config.rotate_rad, config.rotate_rad)
                r = np.eye(3)
                r[[p, p, q, q], [p, q, p, q]] = [np.cos(a), -np.sin(a), np.sin(a), np.cos(a)]
                rot = rot @ r
            zoom = np.diag(rng.uniform(lo, hi, 3))
        matrix = rot @ zoom @ matrix
        changed = True
    n0 = tissues.shape[0]
    if not changed:
        rows_c = np.clip(rows, 0, n0 - 1)
        return tissues[rows_c, box[1], box[2]], np.ascontiguousarray(labels[box])
    centre = np.array([(b.start + b.stop - 1) / 2 for b in box])
    if mode == "2d":  # the same in-plane gather for every slice; rows stay rows
        ij = _nearest_sources(matrix[1:, 1:], centre[1:], box[1:], tissues.shape[1:])
        rows_c = np.clip(rows, 0, n0 - 1)[:, None, None]
        t_block = tissues[rows_c, ij[0][None], ij[1][None]]
        l_block = labels[
            np.clip(np.arange(box[0].start, box[0].stop), 0, n0 - 1)[:, None, None],
            ij[0][None],
            ij[1][None],
        ]
        return t_block, l_block
    src = _nearest_sources(matrix, centre, box, tissues.shape)
    return tissues[src], labels[src]


def _nearest_sources(
    matrix: npt.NDArray[np.float64],
    centre: npt.NDArray[np.float64],
    box: tuple[slice, ...],
    shape: tuple[int, ...],
) -> tuple[npt.NDArray[np.intp], ...]:
    """Per voxel of ``box``, the index of the nearest source voxel ``centre + matrix @
    (voxel - centre)``, clipped to an array of ``shape``; index arrays of the box's shape."""
    out_shape = tuple(b.stop - b.start for b in box)
    grid = np.indices(out_shape, dtype=np.float32).reshape(len(box), -1)
    grid += np.array([b.start for b in box], dtype=np.float32)[:, None] - centre[:, None]
    src = matrix.astype(np.float32) @ grid
    src += centre[:, None].astype(np.float32)
    out = []
    for q, n in enumerate(shape):
        idx = np.rint(src[q]).astype(np.intp)
        np.clip(idx, 0, n - 1, out=idx)
        out.append(idx.reshape(out_shape))
    return tuple(out)


def synthesise(
    tissues: npt.NDArray[np.uint8],
    contrast: DrawnContrast,
    config: DomainRandomisationConfig,
    rng: np.random.Generator,
    *,
    keep_slice: int | None = None,
) -> npt.NDArray[np.float32]:
    """Synthesise an image from a tissue block (uint8, 3D).

    Args:
        tissues: (S, H, W) tissue values.
        contrast: the sample's intensity model (:func:`draw_contrast`).
        config: probabilities and ranges.
        rng: the sample's generator.
        keep_slice: 2D training: after the operations that need neighbouring slices
            (texture, partial volume, slice thickness, blur) only this slice of axis 0 is
            kept, and the in-plane steps (bias, ghosting, Gibbs, noise) run on it.

    Returns:
        float32 (S, H, W), or (1, H, W) with ``keep_slice``, in DESS-fluid units.
    """
    from scipy.ndimage import gaussian_filter

    pv = float(rng.uniform(*config.partial_volume_sigma_vox))
    pv = pv if rng.random() < config.p_partial_volume else 0.0
    res_axis, factor = (
        int(rng.integers(tissues.ndim)),
        float(rng.uniform(*config.resolution_factor)),
    )
    factor = factor if rng.random() < config.p_resolution else 1.0
    blur = float(rng.uniform(*config.blur_sigma_vox))
    blur = blur if rng.random() < config.p_blur else 0.0
    if keep_slice is not None:
        # only the slices the kept one depends on (Gaussian radius: int(3 sigma + 0.5))
        reach = sum(int(3.0 * sg + 0.5) for sg in (pv, blur) if sg > 0)
        if res_axis == 0 and factor > 1.0:
            reach = tissues.shape[0]
        reach = min(reach, keep_slice, tissues.shape[0] - 1 - keep_slice)
        tissues = tissues[keep_slice - reach : keep_slice + reach + 1]
        keep_slice = reach
    image = contrast.table[tissues]
    if contrast.texture_std.any():
        noise = rng.standard_normal(image.shape, dtype=np.float32)
        s = float(rng.uniform(*config.texture_sigma_vox))
        # 2D: smooth within slices (slices stay independent, as in a 2D acquisition)
        noise = gaussian_filter(noise, (0.0, s, s) if keep_slice is not None else s, truncate=3.0)
        noise /= max(float(noise.std()), 1e-6)
        image += contrast.texture_std[tissues] * noise
    if pv > 0:
        image = gaussian_filter(image, pv, truncate=3.0)
    if factor > 1.0:
        image = lower_resolution(image, res_axis, factor, rng)
    if blur > 0:
        image = gaussian_filter(image, blur, truncate=3.0)
    if keep_slice is not None:
        image = image[keep_slice : keep_slice + 1]
    plane = (1, 2) if keep_slice is not None else tuple(range(image.ndim))
    if rng.random() < config.p_bias:
        image = image * bias_field(
            image.shape, config.bias_log_sigma, config.bias_terms, plane, rng
        )
    if rng.random() < config.p_ghosting:
        pe, ro = (int(a) for a in rng.permutation(plane)[:2])
        lines = float(rng.uniform(*config.ghosting_lines))
        image = ghosting(image, pe, ro, lines, config.ghosting_shift_vox, plane, rng)
    if rng.random() < config.p_gibbs:
        axis = int(plane[int(rng.integers(len(plane)))])
        image = gibbs(image, axis, float(rng.uniform(*config.gibbs_keep)))
    return _rician(image.astype(np.float32, copy=False), contrast.noise_std, rng)


def lower_resolution(
    image: npt.NDArray[np.float32], axis: int, factor: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Acquire ``image`` at ``factor`` x lower resolution along ``axis`` and interpolate back:
    Gaussian slice profile (FWHM = factor voxels), samples every ``factor`` voxels from a
    random phase, linear interpolation to the original grid (edges replicated)."""
    from scipy.ndimage import gaussian_filter1d

    n = image.shape[axis]
    if factor <= 1.0 or n < 2:
        return image
    blurred = gaussian_filter1d(image, factor / 2.355, axis=axis, truncate=3.0)
    phase = float(rng.uniform(0.0, factor))
    low_pos = np.arange(phase - factor, n - 1 + factor + 1e-9, factor)
    low = _interp_along(blurred, axis, np.clip(low_pos, 0, n - 1))
    # back to the voxel grid: position x lies between low samples j and j+1
    t = (np.arange(n) - low_pos[0]) / factor
    j = np.clip(np.floor(t).astype(np.int64), 0, len(low_pos) - 2)
    w = (t - j).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = n
    w_b = w.reshape(shape)
    out = np.take(low, j, axis=axis) * (1 - w_b) + np.take(low, j + 1, axis=axis) * w_b
    return out.astype(np.float32, copy=False)


def _interp_along(
    array: npt.NDArray[np.float32], axis: int, positions: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Linear interpolation of ``array`` at fractional ``positions`` along ``axis``."""
    n = array.shape[axis]
    i0 = np.clip(np.floor(positions).astype(np.int64), 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (positions - i0).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = len(positions)
    w_b = w.reshape(shape)
    return np.take(array, i0, axis=axis) * (1 - w_b) + np.take(array, i1, axis=axis) * w_b


def bias_field(
    shape: tuple[int, ...],
    log_sigma: float,
    terms: int,
    axes: tuple[int, ...],
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """A smooth positive field of ``shape`` with mean 1: ``exp`` of a sum of the lowest
    ``terms`` cosines per axis in ``axes`` (products over axes, N(0, log_sigma / sqrt(terms
    ** len(axes))) coefficients; constant along other axes), scaled to mean 1."""
    bases = []
    for a in axes:
        n = shape[a]
        x = (np.arange(n) + 0.5) / n
        bases.append(np.cos(np.pi * np.outer(x, np.arange(terms))))  # (n, terms)
    coef = rng.normal(0.0, log_sigma / np.sqrt(terms ** len(axes)), [terms] * len(axes))
    letters = "abc"[: len(axes)]
    spec = ",".join(f"{c.upper()}{c}" for c in letters) + f",{letters}->" + letters.upper()
    log_field = np.einsum(spec, *bases, coef)
    full = [shape[a] if a in axes else 1 for a in range(len(shape))]
    field = np.exp(log_field).reshape(full)
    return np.broadcast_to(field / field.mean(), shape).astype(np.float32)


def ghosting(
    image: npt.NDArray[np.float32],
    pe_axis: int,
    ro_axis: int,
    fraction: float,
    shift_vox: float,
    axes: tuple[int, ...],
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Motion ghosts: k-space (FFT over ``axes``) lines along ``pe_axis`` (a random
    ``fraction`` of them, never the centre line) get a shift ~ N(0, shift_vox) voxels along
    ``ro_axis``, i.e. a linear phase ramp; the magnitude image is returned. The centre line
    holds the image mean, which therefore stays (up to the magnitude)."""
    k = np.fft.fftn(image, axes=axes)
    n_pe, n_ro = image.shape[pe_axis], image.shape[ro_axis]
    lines: npt.NDArray[np.bool_] = np.asarray(rng.random(n_pe) < fraction)
    lines[0] = False  # the k = 0 line (numpy's unshifted order)
    shifts = np.where(lines, rng.normal(0.0, shift_vox, n_pe), 0.0)
    k_ro = np.fft.fftfreq(n_ro)  # cycles per voxel
    phase = np.exp(-2j * np.pi * np.outer(shifts, k_ro))  # (n_pe, n_ro)
    shape = [1] * image.ndim
    shape[pe_axis], shape[ro_axis] = n_pe, n_ro
    if pe_axis > ro_axis:
        phase = phase.T
    k *= phase.reshape(shape)
    return np.abs(np.fft.ifftn(k, axes=axes)).astype(np.float32)


def gibbs(image: npt.NDArray[np.float32], axis: int, keep: float) -> npt.NDArray[np.float32]:
    """Gibbs ringing: keep the central ``keep`` fraction of k-space along ``axis`` (zero the
    rest) and return the magnitude image; k = 0 is kept, so the mean stays."""
    n = image.shape[axis]
    k = np.fft.fft(image, axis=axis)
    freq = np.abs(np.fft.fftfreq(n))
    mask = (freq <= keep / 2).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = n
    k *= mask.reshape(shape)
    return np.abs(np.fft.ifft(k, axis=axis)).astype(np.float32)


def _rician(
    values: npt.NDArray[np.float32], std: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Magnitude of the signal plus complex Gaussian noise of ``std`` per channel."""
    if std <= 0:
        return values
    real = values + np.float32(std) * rng.standard_normal(values.shape, dtype=np.float32)
    imag = np.float32(std) * rng.standard_normal(values.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)
