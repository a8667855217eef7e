"""Domain randomisation: images synthesised from tissue maps, replayable, with the intended
statistics, normalised as inference would normalise the whole synthesised volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kneescope.core import tissues as tt
from kneescope.transforms.domain_randomisation import (
    DomainRandomisationConfig,
    bias_field,
    crop_blocks,
    draw_contrast,
    ghosting,
    gibbs,
    lower_resolution,
    normalisation_stats,
    stats_subsample,
    synthesise,
)
from kneescope.transforms.intensity import NormalisationConfig, intensity_stats
from kneescope.transforms.patches import PatchSampler

OFF = {
    "p_gamma": 0.0,
    "p_texture": 0.0,
    "p_partial_volume": 0.0,
    "p_resolution": 0.0,
    "p_blur": 0.0,
    "p_bias": 0.0,
    "p_ghosting": 0.0,
    "p_gibbs": 0.0,
    "p_noise": 0.0,
    "p_spatial": 0.0,
}
DESS_ONLY = DomainRandomisationConfig(
    p_reference=1.0, reference_log_sigma=0.0, reference_jitter=0.0, **OFF
)


def _knee_like(shape: tuple[int, int, int] = (20, 48, 48)) -> np.ndarray:
    """A tissue map of nested shapes: fat, muscle, fluid, a femur (cortex, marrow) with
    cartilage, a meniscus and a tendon (kneescope.core.tissues values)."""
    idx = np.indices(shape).astype(np.float32)
    c = (np.asarray(shape, dtype=np.float32) - 1) / 2
    r = np.sqrt(((idx[1:] - c[1:, None, None, None]) ** 2).sum(0))
    t = np.zeros(shape, dtype=np.uint8)
    t[r < 0.48 * shape[1]] = tt.FAT
    t[r < 0.40 * shape[1]] = tt.MUSCLE
    t[r < 0.32 * shape[1]] = tt.FLUID
    t[r < 0.28 * shape[1]] = tt.FEMORAL_CARTILAGE
    t[r < 0.22 * shape[1]] = tt.FEMUR_CORTEX
    t[r < 0.18 * shape[1]] = tt.FEMUR_MARROW
    t[:, : shape[1] // 6, :] = np.where(t[:, : shape[1] // 6, :] > 0, tt.MEDIAL_MENISCUS, 0)
    t[:, :, : shape[2] // 8] = np.where(t[:, :, : shape[2] // 8] > 0, tt.TENDON, 0)
    return t


def _sampler(
    config: DomainRandomisationConfig, mode: str = "2d", augment: bool = True
) -> tuple[PatchSampler, np.ndarray]:
    tissues = _knee_like()
    labels = tt.tissue_label_lut()[tissues]
    patch = (1, 32, 32) if mode == "2d" else (8, 16, 16)
    sampler = PatchSampler(
        images=[np.zeros(tissues.shape, np.float32)],
        labels=[labels],
        patch_size_vox=patch,
        classes=10,
        class_weights=[0.1] * 10,
        mode=mode,  # type: ignore[arg-type]
        augment=augment,
        seed=3,
        flip_axis=None,
        tissues=[tissues],
        domain_randomisation=config,
        normalisation=NormalisationConfig(),
    )
    return sampler, tissues


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_same_iteration_same_synthesised_patches(mode: str) -> None:
    sampler, _ = _sampler(DomainRandomisationConfig(), mode)
    a_img, a_lab = sampler.batch(5, 4)
    b_img, b_lab = sampler.batch(5, 4)
    torch.testing.assert_close(a_img, b_img, rtol=0, atol=0)
    torch.testing.assert_close(a_lab, b_lab, rtol=0, atol=0)
    want = (4, 1, 32, 32) if mode == "2d" else (4, 1, 8, 16, 16)
    assert a_img.shape == want and a_lab.shape == want and a_lab.dtype == torch.int64
    assert torch.isfinite(a_img).all()
    c_img, _ = sampler.batch(6, 4)
    assert not torch.equal(a_img, c_img)


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_rotated_blocks_keep_tissues_and_labels_together_and_use_the_surroundings(
    mode: str,
) -> None:
    tissues = _knee_like((20, 48, 48))
    labels = tt.tissue_label_lut()[tissues]
    config = DomainRandomisationConfig(p_spatial=1.0, rotate_rad=0.5, slab_slices=5)
    if mode == "2d":
        box = (slice(9, 10), slice(12, 36), slice(12, 36))
    else:
        box = (slice(6, 14), slice(12, 36), slice(12, 36))
    # a second map: muscle exactly in the box, fat around it
    framed = np.full(tissues.shape, tt.FAT, dtype=np.uint8)
    framed[:, box[1], box[2]] = tt.MUSCLE
    moved = outside = 0
    for k in range(10):
        args = (box, config, mode, 1, True)
        t_block, l_block = crop_blocks(tissues, labels, *args, np.random.default_rng(k))  # type: ignore[arg-type]
        centre = t_block[2:3] if mode == "2d" else t_block
        assert t_block.shape[0] == (5 if mode == "2d" else 8)
        np.testing.assert_array_equal(tt.tissue_label_lut()[centre], l_block)
        moved += int(not np.array_equal(centre, tissues[box]))
        # rotated about the box centre, the corners come from around the box (fat), not
        # from the box's replicated edge (muscle)
        f_block, _ = crop_blocks(framed, labels, *args, np.random.default_rng(k))  # type: ignore[arg-type]
        outside += int((f_block == tt.FAT).any())
    assert moved >= 8 and outside >= 6


def test_dess_only_is_the_dess_table_lookup_normalised_like_inference() -> None:
    tissues = _knee_like()
    rng = np.random.default_rng(0)
    contrast = draw_contrast(DESS_ONLY, rng)
    np.testing.assert_array_equal(contrast.table, tt.CONTRASTS["dess"])
    clean = synthesise(tissues, contrast, DESS_ONLY, rng)
    np.testing.assert_array_equal(clean, tt.CONTRASTS["dess"][tissues])

    # through the sampler: every pixel is its tissue's DESS value, normalised with the
    # statistics inference would take of the whole DESS volume
    sampler, _ = _sampler(DESS_ONLY, augment=False)
    img, lab = sampler.batch(0, 6)
    stats = intensity_stats(tt.CONTRASTS["dess"][tissues], NormalisationConfig())
    allowed = stats.apply_numpy(tt.CONTRASTS["dess"])
    values = np.unique(img.numpy())
    assert np.abs(values[:, None] - allowed[None, :]).min(axis=1).max() < 1e-5
    # and the labels under each synthesised value are those of the tissue it came from
    lut = tt.tissue_label_lut()
    for t in np.unique(tissues):
        hit = np.isclose(img.numpy(), allowed[t], atol=1e-6)
        same = [u for u in np.unique(tissues) if np.isclose(allowed[u], allowed[t], atol=1e-6)]
        assert set(np.unique(lab.numpy()[hit]).tolist()) <= {int(lut[u]) for u in same}


def test_uniform_intensities_vary_per_tissue_and_reference_ones_keep_the_dess_order() -> None:
    rng = np.random.default_rng(1)
    uniform = DomainRandomisationConfig(p_reference=0.0, **OFF)
    tables = np.stack([draw_contrast(uniform, rng).table for _ in range(400)])
    assert np.allclose(tables.mean(0), 0.5, atol=0.06)
    assert np.allclose(tables.std(0), 1 / np.sqrt(12), atol=0.04)
    # the order of two tissues is a coin flip (muscle brighter than marrow about half the time)
    assert 0.4 < (tables[:, tt.MUSCLE] > tables[:, tt.FEMUR_MARROW]).mean() < 0.6

    reference = DomainRandomisationConfig(p_reference=1.0, **OFF)
    tables = np.stack([draw_contrast(reference, rng).table for _ in range(400)])
    dess = tt.CONTRASTS["dess"]
    assert np.allclose(np.median(tables, 0), dess, atol=0.03)
    assert (tables[:, tt.FLUID] > tables[:, tt.MUSCLE]).mean() > 0.95
    assert (tables[:, tt.MUSCLE] > tables[:, tt.FEMUR_MARROW]).mean() > 0.9

    mixed = DomainRandomisationConfig(p_reference=0.5, reference_jitter=0.0, **OFF)
    tables = np.stack([draw_contrast(mixed, rng).table for _ in range(400)])
    is_dess_bg = tables[:, tt.BACKGROUND] == 0.0  # DESS background is 0 (lognormal x 0)
    assert 0.4 < is_dess_bg.mean() < 0.6


def test_bias_field_is_smooth_positive_with_mean_one() -> None:
    rng = np.random.default_rng(2)
    for axes, shape in (((1, 2), (1, 64, 64)), ((0, 1, 2), (48, 48, 48))):
        field = bias_field(shape, 0.3, 4, axes, rng)
        assert field.shape == shape and field.dtype == np.float32
        assert field.min() > 0 and abs(float(field.mean()) - 1.0) < 1e-5
        assert field.std() > 0.02  # it does vary
        for a in axes:  # and smoothly: neighbours differ by a small part of the range
            step = np.abs(np.diff(field, axis=a)).max()
            assert step < 0.25 * float(field.max() - field.min())


def _high_frequency_energy(image: np.ndarray, axis: int, above: float) -> float:
    spec = np.abs(np.fft.fft(image, axis=axis)) ** 2
    freq = np.abs(np.fft.fftfreq(image.shape[axis]))
    shape = [1] * image.ndim
    shape[axis] = -1
    return float((spec * (freq > above).reshape(shape)).sum() / spec.sum())


def test_gibbs_and_ghosting_keep_the_mean_and_change_high_frequencies() -> None:
    clean = tt.CONTRASTS["dess"][_knee_like((1, 64, 64))]
    rung = gibbs(clean, 2, 0.4)
    assert abs(float(rung.mean()) - float(clean.mean())) < 0.02 * float(clean.mean())
    assert _high_frequency_energy(clean, 2, 0.25) > 1e-3
    # truncated above 0.2 cycles/voxel; the magnitude brings back a little where rings dip < 0
    assert _high_frequency_energy(rung, 2, 0.25) < 0.05 * _high_frequency_energy(clean, 2, 0.25)
    assert np.abs(rung - clean).max() > 0.05  # ringing at edges

    rng = np.random.default_rng(4)
    ghosted = ghosting(clean, 1, 2, 0.3, 2.0, (1, 2), rng)
    # the complex image keeps its mean exactly (k = 0 untouched); the magnitude adds the
    # ghosts' absolute value, a few percent at 30 % of lines shifted by ~2 voxels
    assert abs(float(ghosted.mean()) - float(clean.mean())) < 0.08 * float(clean.mean())
    background = clean == 0
    assert float(ghosted[background].mean()) > 0.005  # ghosts appear outside the knee
    assert _high_frequency_energy(ghosted, 1, 0.25) != pytest.approx(
        _high_frequency_energy(clean, 1, 0.25), rel=0.05
    )


def test_lower_resolution_blurs_only_along_its_axis() -> None:
    clean = tt.CONTRASTS["dess"][_knee_like((24, 24, 24))]
    low = lower_resolution(clean, 0, 3.0, np.random.default_rng(5))
    assert low.shape == clean.shape
    assert abs(float(low.mean()) - float(clean.mean())) < 0.03 * float(clean.mean())
    # the knee phantom is constant along axis 0: nothing changes there ...
    np.testing.assert_allclose(low, clean, atol=1e-5)
    # ... but along axis 1 edges are smeared
    smeared = lower_resolution(clean, 1, 3.0, np.random.default_rng(5))
    assert np.abs(np.diff(smeared, axis=1)).max() < np.abs(np.diff(clean, axis=1)).max()


def test_normalisation_of_the_subsample_approximates_the_whole_synthesised_volume() -> None:
    tissues = _knee_like((40, 96, 96))  # 369k voxels, thinned to 5000 for the statistics
    config = DomainRandomisationConfig(
        p_reference=0.5, **{**OFF, "p_texture": 1.0, "p_noise": 1.0}, stats_samples=5000
    )
    sub = stats_subsample(tissues, config.stats_samples)
    assert sub.size <= 5000 and sub.dtype == np.uint8
    norm = NormalisationConfig()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        contrast = draw_contrast(config, rng)
        assert contrast.noise_std <= 0.1 and contrast.texture_std.max() <= 0.06
        whole = synthesise(tissues, contrast, config, rng)
        truth = intensity_stats(whole, norm)  # what inference would compute
        approx = normalisation_stats(sub, contrast, norm, rng)
        assert abs(approx.centre - truth.centre) < 0.05 * truth.scale
        assert abs(approx.scale - truth.scale) < 0.05 * truth.scale
        assert abs(approx.high - truth.high) < 0.1 * truth.scale


def test_full_randomisation_draws_every_step_and_stays_finite() -> None:
    config = DomainRandomisationConfig(
        p_reference=0.5,
        p_gamma=1.0,
        p_texture=1.0,
        p_partial_volume=1.0,
        p_resolution=1.0,
        p_blur=1.0,
        p_bias=1.0,
        p_ghosting=1.0,
        p_gibbs=1.0,
        p_noise=1.0,
        p_spatial=1.0,
    )
    for mode in ("2d", "3d"):
        sampler, _ = _sampler(config, mode)
        img, lab = sampler.batch(1, 4)
        assert torch.isfinite(img).all() and img.std() > 0.1
        assert set(np.unique(lab.numpy())) <= set(range(10))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slab_slices", 4, "slab_slices must be odd"),
        ("resolution_factor", (0.5, 2.0), "resolution_factor must be >= 1"),
        ("noise_std", (0.2, 0.1), "noise_std needs 0 <= low <= high"),
        ("p_bias", 1.5, "less than or equal to 1"),
    ],
)
def test_bad_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DomainRandomisationConfig(**{field: value})  # type: ignore[arg-type]
