"""The 3D MRI KL grade (issue 16, item 1): the whole-volume preprocessing, a 3D classifier
trained in-test on volumes whose grade is visible, and the ``mri_klg`` step.
The memory side (planner, checkpointing of ResNet blocks): tests/memory/test_mri_kl_memory.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.capabilities.classification.kl import KL_CLASSES
from kneescope.capabilities.classification.mri_kl import (
    grade_volumes,
    load_mri_kl_model,
)
from kneescope.capabilities.classification.volume_data import (
    VolumeClassificationData,
    prepare_volume,
    resample_volume,
)
from kneescope.capabilities.classification.volume_task import VolumeClassificationTask
from kneescope.core import Volume
from kneescope.models import NetworkConfig
from kneescope.transforms.intensity import NormalisationConfig

GRID = (32, 32, 32)
RIA = np.array(  # voxel -> RAS of a sagittal RIA stack (i right, j inferior, k anterior), 1 mm
    [[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1.0]]
)
TINY = NetworkConfig(
    name="resnet",
    spatial_dims=3,
    out_channels=5,
    features=(4, 8, 8, 8),
    layers=(1, 1, 1, 1),
    norm="instance",
    act="relu",
)


def _knee(grade: int, rng: np.random.Generator, side: str = "right") -> Volume:
    """A 32^3 'knee' (RIA) whose grade is the gap between two bright plates (a joint space
    that narrows with the grade), on the medial (low-i) half only; left knees mirrored."""
    array = rng.normal(100.0, 10.0, GRID)
    gap = 14 - 3 * grade  # voxels between the plates
    top = 8 + int(rng.integers(0, 3))
    array[:16, top : top + 4, 6:26] += 400.0
    array[:16, top + 4 + gap : top + 8 + gap, 6:26] += 400.0
    if side == "left":
        array = array[::-1]
    return Volume(np.ascontiguousarray(array, dtype=np.float32), RIA, {"side": side})


def _prepared(volumes: list[Volume], sides: list[str]) -> np.ndarray:
    return np.stack(
        [
            prepare_volume(
                v.array,
                v.affine_ras,
                s,
                GRID,
                orientation="RIA",
                normalisation=NormalisationConfig(),
            )
            for v, s in zip(volumes, sides, strict=True)
        ]
    )


def test_a_left_knee_is_mirrored_and_any_orientation_gives_the_same_input() -> None:
    right = _knee(2, np.random.default_rng(5))
    left = _knee(2, np.random.default_rng(5), side="left")
    want = _prepared([right], ["right"])[0]
    assert np.array_equal(_prepared([left], ["left"])[0], want)
    assert not np.allclose(_prepared([left], ["right"])[0], want)  # unmirrored: another knee
    # the same knee stored with its axes permuted and one reversed (affine adjusted):
    # stored[p, q, r] = knee[31 - q, r, p]
    stored_array = np.ascontiguousarray(right.array.transpose(2, 0, 1)[:, ::-1])
    to_knee = np.array([[0, -1.0, 0, GRID[0] - 1], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1.0]])
    stored = Volume(stored_array, RIA @ to_knee)
    assert stored.orientation != right.orientation
    assert np.array_equal(_prepared([stored], ["right"])[0], want)


def test_resampling_keeps_the_whole_field_of_view() -> None:
    """Shrinking averages blocks (the FOV's content stays where it was); growing
    interpolates; the mean intensity is kept."""
    array = np.zeros((8, 12, 12), dtype=np.float32)
    array[:4] = 1.0  # the first half of axis 0 is bright
    small = resample_volume(array, (4, 6, 6))
    assert small.shape == (4, 6, 6)
    assert np.allclose(small[:2], 1.0) and np.allclose(small[2:], 0.0)
    big = resample_volume(array, (16, 24, 24))
    assert big.shape == (16, 24, 24)
    assert big.mean() == pytest.approx(array.mean(), abs=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D ResNet trained by the engine on 60 toy knees (10 seconds on one core)."""
    from kneescope.training.engine import fit
    from kneescope.training.engine_config import EngineConfig

    rng = np.random.default_rng(1)
    grades = [k % 5 for k in range(60)]
    knees = [_knee(g, rng) for g in grades]
    train = VolumeClassificationData(
        _prepared(knees, ["right"] * 60), np.array(grades, dtype=np.int64), KL_CLASSES
    )
    val_grades = [k % 5 for k in range(20)]
    val_knees = [_knee(g, np.random.default_rng(100 + k)) for k, g in enumerate(val_grades)]
    validation = VolumeClassificationData(
        _prepared(val_knees, ["right"] * 20), np.array(val_grades, dtype=np.int64), KL_CLASSES
    )
    task = VolumeClassificationTask(TINY, train, validation, orientation="RIA", seed=3)
    folder = tmp_path_factory.mktemp("mri_kl")
    config = EngineConfig(
        iterations=80,
        batch_size=8,
        lr=1e-2,
        schedule="cosine",
        precision="fp32",
        validate_every=60,
        checkpoint_every=60,
        threads=1,
        seed=3,
    )
    result = fit(task, config, run_dir=folder / "run", model_path=folder / "mri-kl.pt")
    assert result.model_path is not None
    return result.model_path


def test_the_trained_volume_classifier_grades_unseen_knees_of_both_sides(trained: Path) -> None:
    model = load_mri_kl_model(trained)
    assert model.spec.input_size_vox == GRID and model.spec.orientation == "RIA"
    rng = np.random.default_rng(7)
    truth = [k % 5 for k in range(20)]
    sides = ["left" if k % 2 else "right" for k in range(20)]
    knees = [_knee(g, rng, s) for g, s in zip(truth, sides, strict=True)]
    graded = grade_volumes(model, knees, sides)
    assert np.allclose(graded.probabilities.sum(axis=1), 1.0)
    within_one = np.abs(graded.grades - np.array(truth)) <= 1
    assert within_one.mean() >= 0.9, graded.grades
    assert (graded.grades == np.array(truth)).mean() >= 0.6, graded.grades


def test_mri_klg_step_writes_the_calibrated_columns(trained: Path, tmp_path: Path) -> None:
    from kneescope.capabilities.classification.mri_klg_step import MriKlGrade
    from kneescope.cohort.item import Item
    from kneescope.cohort.step import StepContext

    step = MriKlGrade(model=str(trained))
    step.setup()
    knee = _knee(3, np.random.default_rng(11), side="left")
    item = Item(item_id="knee-1", path=str(tmp_path / "knee"), side="left")
    result = step.run(item, StepContext(tmp_path, {"image": knee}))
    assert set(result.values) == {c.name for c in MriKlGrade.results}
    expected = grade_volumes(load_mri_kl_model(trained), [knee], ["left"]).probabilities[0]
    got = [result.values[f"mri_kl_probability_{k}"] for k in range(5)]
    assert np.allclose(got, expected)
    assert result.values["mri_kl_index"] == int(np.argmax(expected))
    assert result.values["mri_kl_label"] == str(int(np.argmax(expected)))


def test_mri_klg_is_a_registered_step() -> None:
    from kneescope.capabilities.classification.mri_klg_step import MriKlGrade
    from kneescope.cohort.step_registry import step_class

    assert step_class("mri_klg") is MriKlGrade
    assert MriKlGrade.reads == ("image",)


def test_a_second_stage_starts_from_the_first_stages_weights(trained: Path) -> None:
    from kneescope.errors import ModelError
    from kneescope.models import build_network
    from kneescope.models.model_file import load_model_file

    rng = np.random.default_rng(2)
    knees = [_knee(g, rng) for g in range(5)]
    data = VolumeClassificationData(
        _prepared(knees, ["right"] * 5), np.arange(5, dtype=np.int64), KL_CLASSES
    )
    task = VolumeClassificationTask(TINY, data, data, orientation="RIA", init_path=trained)
    net = build_network(TINY)
    task.initialise(net)
    saved = load_model_file(trained).state_dict
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    wider = TINY.model_copy(update={"features": (8, 8, 8, 8)})
    other = VolumeClassificationTask(wider, data, data, orientation="RIA", init_path=trained)
    with pytest.raises(ModelError, match="not the one being trained"):
        other.initialise(build_network(wider))


@pytest.mark.slow
def test_the_shipped_model_grades_unseen_synthetic_knees_near_their_truth() -> None:
    """kl-mri-synth (weights_only model file, float16 weights) on three knees of a cohort seed
    used for nothing else (16150): a right KL 3, a left KL 0 and a left KL 4 knee, rendered on
    the small grid. Each within one grade of the truth; P(KL >= 2) on the right side of 0.5."""
    from kneescope.synth.cohort import CohortSpec, plan_subject
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import SMALL

    model = load_mri_kl_model("kl-mri-synth")
    spec = CohortSpec(subjects=3, seed=16150, visits=("V00",))
    for index, side in ((2, "right"), (2, "left"), (1, "left")):
        state = plan_subject(spec, index).knees[side][0]
        image = render_knee(state.params, SMALL).image
        graded = grade_volumes(model, [image], [side])
        assert abs(int(graded.grades[0]) - state.klg) <= 1, (index, side, graded.grades)
        p_oa = float(graded.probabilities[0, 2:].sum())
        assert (p_oa > 0.5) == (state.klg >= 2), (index, side, p_oa)
