"""The Segmenter: exact input geometry, orientation equivariance, cascade, model-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from kneescope.core import Volume, affine_from_axes
from kneescope.errors import ModelError
from kneescope.inference.segmentation_model import (
    ModelSpec,
    SegmentationModel,
    load_model,
    save_model,
)
from kneescope.inference.segmenter import SegmentConfig, Segmenter
from kneescope.models import NetworkConfig, build_network
from kneescope.transforms.orientation import plan_reorientation


def tiny_model(mode: str = "3d", classes: int = 3, seed: int = 0) -> SegmentationModel:
    """A randomly initialised MONAI UNet (features 4, 8) wrapped as a model file."""
    dims = 3 if mode == "3d" else 2
    config = NetworkConfig(
        name="unet",
        spatial_dims=dims,
        out_channels=classes,
        features=(4, 8),
        strides=(2,),
        num_res_units=0,
    )
    torch.manual_seed(seed)
    net = build_network(config)
    spec = ModelSpec(
        network=config,
        mode="3d" if mode == "3d" else "2d",
        labels={i: f"s{i}" for i in range(1, classes)},
        spacing_mm=(1.0, 1.0, 1.0),
        orientation="RAS",
        roi_size_vox=(8, 8, 8) if mode == "3d" else (2, 8, 8),
    )
    return SegmentationModel(spec=spec, state_dict=net.state_dict())


@pytest.fixture
def model3d() -> SegmentationModel:
    return tiny_model("3d")


@pytest.fixture
def model2d() -> SegmentationModel:
    return tiny_model("2d")


def _phantom(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(100.0, 10.0, size=shape)
    c = np.array(shape) / 2.0
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    img[np.linalg.norm(grid - c, axis=-1) < min(shape) / 3] += 300.0
    return img.astype(np.uint16)


def _oblique_affine(seed: int, side: str, spacing: tuple[float, float, float]) -> np.ndarray:
    rot = Rotation.from_euler("xyz", np.random.default_rng(seed).uniform(-25, 25, 3), degrees=True)
    direction = rot.as_matrix()
    if side == "left":
        direction = np.diag([-1.0, 1.0, 1.0]) @ direction
    return affine_from_axes([-40.0, 12.0, 7.5], direction, spacing)


@settings(max_examples=6, deadline=None)
@given(
    side=st.sampled_from(["right", "left"]),
    seed=st.integers(0, 1000),
    perm=st.permutations([0, 1, 2]),
)
def test_oblique_inputs_keep_exact_geometry_and_are_orientation_equivariant(
    side: str, seed: int, perm: list[int]
) -> None:
    model = tiny_model("3d")
    seg = Segmenter(model, SegmentConfig(device="cpu", precision="fp32", cleanup=False))
    shape = (13, 18, 11)
    image = Volume(_phantom(shape, seed), _oblique_affine(seed, side, (1.0, 1.1, 0.9)))
    result = seg.segment(image)
    assert result.labels.shape == image.shape
    assert result.labels.array.dtype == np.uint8
    np.testing.assert_array_equal(result.labels.affine_ras, image.affine_ras)
    # the same voxels stored in another axis order (and the matching affine) give the same
    # labels, voxel for voxel: the segmenter reorients before the network and undoes it after
    moved_arr = np.transpose(image.array, perm)
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    for p, q in enumerate(perm):
        m[q, p] = 1.0
    moved = Volume(np.ascontiguousarray(moved_arr), image.affine_ras @ m)
    back = seg.segment(moved).labels
    np.testing.assert_array_equal(back.affine_ras, moved.affine_ras)
    np.testing.assert_array_equal(np.transpose(result.labels.array, perm), back.array)


def test_resampling_to_model_spacing_returns_input_grid(model3d: SegmentationModel) -> None:
    seg = Segmenter(model3d, SegmentConfig(device="cpu", precision="fp32"))
    image = Volume(_phantom((10, 30, 30), 1), _oblique_affine(3, "left", (0.7, 0.4, 0.4)))
    result = seg.segment(image)
    assert result.labels.shape == image.shape
    np.testing.assert_array_equal(result.labels.affine_ras, image.affine_ras)


def test_2d_model_segments_slice_wise(model2d: SegmentationModel) -> None:
    seg = Segmenter(model2d, SegmentConfig(device="cpu", precision="bf16", tta=True))
    image = Volume(_phantom((7, 16, 20), 2), np.diag([0.7, 0.36, 0.36, 1.0]))
    result = seg.segment(image)
    assert result.labels.shape == image.shape
    assert int(result.labels.array.max()) < 3


def test_probabilities_sum_to_one(model3d: SegmentationModel) -> None:
    config = SegmentConfig(device="cpu", precision="fp32", probabilities=True, cleanup=False)
    seg = Segmenter(model3d, config)
    image = Volume(_phantom((9, 12, 10), 4), np.eye(4))
    result = seg.segment(image)
    assert result.probabilities is not None
    assert result.probabilities.shape == (9, 12, 10, 3)
    total = result.probabilities.astype(int).sum(axis=-1)
    assert np.all(np.abs(total - 255) <= 2)
    agree = np.argmax(result.probabilities, axis=-1) == result.labels.array
    assert agree.mean() > 0.97  # only ties after rounding to 1/255 may differ


def test_cascade_finds_the_knee(model3d: SegmentationModel) -> None:
    """A bright block placed off-centre in a large dark volume: the fine pass runs in its box."""
    shape = (40, 64, 48)
    rng = np.random.default_rng(5)
    img = rng.normal(50.0, 5.0, size=shape)
    knee = (slice(22, 34), slice(8, 30), slice(26, 44))
    img[knee] = 1000.0
    image = Volume(img.astype(np.uint16), np.eye(4))
    seg = Segmenter(
        model3d,
        SegmentConfig(device="cpu", precision="fp32", cascade=True, cascade_margin_mm=2.0),
    )

    def threshold(batch: torch.Tensor) -> torch.Tensor:  # stands in for a trained network
        fg = (batch[:, :1] > 2.0).float()
        return torch.cat([1.0 - fg, fg, torch.zeros_like(fg)], dim=1) * 10.0

    seg.predictor = threshold
    result = seg.segment(image)
    assert result.box is not None
    for got, want in zip(result.box, knee, strict=True):
        assert got.start <= want.start and got.stop >= want.stop  # contains the knee
        assert (got.stop - got.start) <= (want.stop - want.start) + 16  # and is tight
    truth = np.zeros(shape, dtype=np.uint8)
    truth[knee] = 1
    np.testing.assert_array_equal(result.labels.array, truth)


def test_model_file_round_trip(tmp_path: Path, model3d: SegmentationModel) -> None:
    path = save_model(model3d, tmp_path / "m.pt")
    loaded = load_model(path)
    assert loaded.spec == model3d.spec
    for k, v in model3d.state_dict.items():
        torch.testing.assert_close(loaded.state_dict[k], v)


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path, model3d: SegmentationModel) -> None:
    path = save_model(model3d, tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt"):
        Segmenter(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="corrupt"):
        load_model(junk)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a kneescope"):
        load_model(tmp_path / "other.pt")


def test_reorientation_round_trip() -> None:
    affine = _oblique_affine(9, "left", (0.7, 0.36, 0.36))
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    for code in ("RAS", "LPS", "PIR", "SAL"):
        reo = plan_reorientation(affine, arr.shape, code)
        moved = reo.apply(arr)
        np.testing.assert_array_equal(reo.undo(moved), arr)
        new_affine = reo.affine(affine)
        # each voxel keeps its world position
        idx = np.array([1, 2, 3])
        src_idx = np.argwhere(arr == moved[tuple(idx)])[0]
        np.testing.assert_allclose(
            new_affine @ np.array([*idx, 1.0]), affine @ np.array([*src_idx, 1.0]), atol=1e-9
        )


def _canonical(model: SegmentationModel) -> SegmentationModel:
    spec = model.spec.model_copy(update={"side_canonical": True})
    return SegmentationModel(spec=spec, state_dict=model.state_dict)


def test_side_canonical_model_mirrors_left_knees(model3d: SegmentationModel) -> None:
    """A left knee is mirrored before the network and back after: segmenting it equals
    segmenting its mirror image as a right knee, mirrored back (the random network is not
    mirror-symmetric, so skipping either mirror would show)."""
    seg = Segmenter(
        _canonical(model3d), SegmentConfig(device="cpu", precision="fp32", cleanup=False)
    )
    image = Volume(_phantom((12, 14, 10), 7), np.diag([0.7, 0.4, 0.4, 1.0]))  # axis 0: L-R
    left = seg.segment(image, side="left")
    assert left.side == "left"
    mirrored = image.with_array(np.ascontiguousarray(image.array[::-1]))
    right = seg.segment(mirrored, side="R")
    np.testing.assert_array_equal(left.labels.array, right.labels.array[::-1])
    plain = Segmenter(model3d, SegmentConfig(device="cpu", precision="fp32", cleanup=False))
    assert not np.array_equal(plain.segment(image).labels.array, left.labels.array)


def test_side_comes_from_dicom_laterality_or_is_a_clear_error(
    model3d: SegmentationModel,
) -> None:
    from kneescope.errors import InputError

    seg = Segmenter(_canonical(model3d), SegmentConfig(device="cpu", precision="fp32"))
    arr = _phantom((8, 8, 8), 3)
    with pytest.raises(InputError, match="--side"):
        seg.segment(Volume(arr, np.eye(4)))
    with pytest.raises(InputError, match="not right or left"):
        seg.segment(Volume(arr, np.eye(4)), side="middle")
    tagged = Volume(arr, np.eye(4), metadata={"laterality": "left"})
    assert seg.segment(tagged).side == "left"


def test_phases_compose_to_segment_and_time_each_phase(model3d: SegmentationModel) -> None:
    """prepare -> infer -> finish gives segment()'s labels; infer's result is on the model
    grid (resampled here) and does not hold the working image; seconds has every phase."""
    seg = Segmenter(model3d, SegmentConfig(precision="fp32", cleanup=True))
    affine = affine_from_axes([0.0, 0.0, 0.0], np.eye(3), (1.5, 1.0, 1.0))
    image = Volume(_phantom((12, 20, 16), 3), affine)
    whole = seg.segment(image, side="right")
    prepared = seg.prepare(image, side="right")
    assert prepared.work.shape == (18, 20, 16)  # 1.5 mm -> the model's 1 mm along i
    raw = seg.infer(prepared)
    assert raw.labels.shape == prepared.work.shape and raw.labels.dtype == np.uint8
    assert not hasattr(raw, "work")
    result = seg.finish(raw)
    np.testing.assert_array_equal(result.labels.array, whole.labels.array)
    assert result.labels.shape == image.shape
    np.testing.assert_array_equal(result.labels.affine_ras, image.affine_ras)
    assert set(result.seconds) == {"prepare", "infer", "finish", "total"}
    total = result.seconds["prepare"] + result.seconds["infer"] + result.seconds["finish"]
    assert result.seconds["total"] == pytest.approx(total)
    assert result.side == "right"


def test_plane_window_runs_a_2d_model_on_whole_slices(model2d: SegmentationModel) -> None:
    """window="plane": one window covers each slice (rounded up to the network's divisor
    and padded), the labels keep the input grid; the default keeps the model's window."""
    image = Volume(_phantom((5, 17, 19), 4), np.diag([1.0, 1.0, 1.0, 1.0]))
    plane = Segmenter(model2d, SegmentConfig(precision="fp32", window="plane"))
    assert plane.window_for((5, 17, 19)) == (2, 18, 20)  # divisor 2: padded
    assert Segmenter(model2d, SegmentConfig(precision="fp32")).window_for((5, 17, 19)) == (2, 8, 8)
    result = plane.segment(image)
    assert result.labels.shape == image.shape
    assert int(result.labels.array.max()) < 3


def test_auto_blend_is_constant_for_2d_and_gaussian_for_3d(
    model2d: SegmentationModel, model3d: SegmentationModel
) -> None:
    """blend="auto" (the default) blends a 2D model's windows with constant weights (MONAI's
    default: the best truth Dice for the shipped 2D model) and a 3D model's with a Gaussian;
    an explicit choice wins."""
    assert SegmentConfig().blend == "auto"
    assert Segmenter(model2d, SegmentConfig(precision="fp32")).blend == "constant"
    assert Segmenter(model3d, SegmentConfig(precision="fp32")).blend == "gaussian"
    gauss = Segmenter(model2d, SegmentConfig(precision="fp32", blend="gaussian"))
    assert gauss.blend == "gaussian"
    image = Volume(_phantom((6, 16, 20), 5), np.diag([0.7, 0.36, 0.36, 1.0]))
    auto = Segmenter(model2d, SegmentConfig(precision="fp32", cleanup=False)).segment(image)
    const = Segmenter(model2d, SegmentConfig(precision="fp32", cleanup=False, blend="constant"))
    assert np.array_equal(auto.labels.array, const.segment(image).labels.array)


def test_stats_sample_gives_the_volumes_exact_statistics() -> None:
    """The strided sample gathered from a reoriented (non-contiguous) view gives exactly the
    statistics of the whole array, without copying it."""
    from kneescope.inference.segmenter import _stats_sample
    from kneescope.transforms.intensity import NormalisationConfig, intensity_stats

    base = np.random.default_rng(5).gamma(2.0, 50.0, size=(40, 160, 171)).astype(np.uint16)
    config = NormalisationConfig()
    for view in (base, base[::-1].transpose(2, 0, 1), base[:, ::2, 3:]):
        sample = _stats_sample(view)
        assert view.size < 1_000_000 or sample.size <= view.size // 2 + 1  # a sample
        got = intensity_stats(sample, config, max_samples=sample.size)
        assert got == intensity_stats(view, config)
