"""KL grading building blocks: class folders with L/R pairs, the MONAI ResNet classifier
(single and paired), ordinal targets and grade metrics, fine-tuning a paired network from a
single one, temperature in predictions, and the KL API on knee ROIs and crops."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kneescope.capabilities.classification.config import ClassificationConfig
from kneescope.capabilities.classification.folder_data import load_class_folder, pair_indices
from kneescope.capabilities.classification.grade_metrics import (
    binary_auc,
    ordinal_targets,
    quadratic_kappa,
)
from kneescope.capabilities.classification.kl import (
    crop_rois,
    grade_crops,
    grade_knees,
    load_kl_model,
)
from kneescope.capabilities.classification.predict import load_classifier, predict_logits
from kneescope.capabilities.classification.synthetic import synthetic_classification
from kneescope.capabilities.classification.task import ClassificationTaskFactory
from kneescope.errors import InputError, ModelError
from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_file import load_model_file, save_model_file
from kneescope.training.engine import fit
from kneescope.training.engine_config import EngineConfig
from kneescope.workspace import Workspace

TINY_RESNET = {
    "name": "resnet",
    "spatial_dims": 2,
    "out_channels": 5,
    "features": [4, 8, 8, 16],
    "layers": [1, 1, 1, 1],
    "norm": "batch",
    "act": "relu",
}


def _write_folder(root: Path, n_per_class: int, seed: int) -> None:
    """Five 'grades' of bar images; participant k's L and R knee share a grade folder."""
    data = synthetic_classification(5 * n_per_class * 2, n_classes=5, size_vox=(40, 40), seed=seed)
    for idx, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip((image + 1.0) * 100.0, 0, 255).astype(np.uint8)
        side = "L" if idx % 2 else "R"
        Image.fromarray(pixels).save(folder / f"{9000000 + idx // 2}{side}.png")


def test_pairs_join_left_and_right_of_one_participant() -> None:
    names = ["9001L.png", "9002R.png", "9001R.png", "x.png", "9003L.png"]
    assert pair_indices(names).tolist() == [2, 1, 0, 3, 4]


def test_class_folder_reads_every_image_with_its_grade(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", 3, seed=1)
    data = load_class_folder(tmp_path / "train", ("0", "1", "2", "3", "4"), (32, 32))
    assert data.images.shape[1:] == (32, 32)
    for name, label in zip(data.names, data.labels, strict=True):
        assert name.split("/")[0] == str(label)
    with pytest.raises(InputError, match="no such class folder"):
        load_class_folder(tmp_path / "train", ("0", "9"), (32, 32))


def test_ordinal_targets_prefer_near_grades() -> None:
    t = ordinal_targets(5, 0.5)
    assert np.allclose(t.sum(axis=1), 1.0)
    for y in range(5):
        assert t[y].argmax() == y
        dist = np.abs(np.arange(5) - y)
        order = np.argsort(dist, kind="stable")
        assert all(t[y][a] >= t[y][b] for a, b in itertools.pairwise(order))


def test_quadratic_kappa_and_auc_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, 200)
    noisy = np.clip(truth + rng.integers(-1, 2, 200), 0, 4)
    assert quadratic_kappa(truth, truth, 5) == pytest.approx(1.0)
    # brute force: 1 - sum w O / sum w E
    o = np.zeros((5, 5))
    np.add.at(o, (truth, noisy), 1)
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    w = (np.arange(5)[:, None] - np.arange(5)[None, :]) ** 2
    assert quadratic_kappa(truth, noisy, 5) == pytest.approx(1 - (w * o).sum() / (w * e).sum())
    scores = rng.random(50)
    positive = rng.random(50) < 0.4
    pairs = [(p, n) for p in scores[positive] for n in scores[~positive]]
    brute = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert binary_auc(scores, positive) == pytest.approx(brute)
    assert binary_auc(scores, np.zeros(50, bool)) is None


def test_paired_resnet_shares_one_backbone() -> None:
    single = NetworkConfig.model_validate(TINY_RESNET)
    paired = single.model_copy(update={"paired": True})
    net = build_network(paired).eval()
    x = torch.randn(3, 2, 48, 48)
    with torch.no_grad():
        both = net.features(x)
        alone = net.backbone(x[:, :1])
        other = net.backbone(x[:, 1:])
    assert torch.allclose(both, torch.cat([alone, other], dim=1), atol=1e-5)
    # parameters: the paired network only adds the head's second half
    n_single = sum(p.numel() for p in build_network(single).parameters())
    n_paired = sum(p.numel() for p in net.parameters())
    assert n_paired - n_single == 16 * 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, single model) after a few iterations on class folders."""
    root = tmp_path_factory.mktemp("kl")
    _write_folder(root / "train", 6, seed=2)
    _write_folder(root / "val", 2, seed=3)
    options = {
        "classes": ["0", "1", "2", "3", "4"],
        "input_size_vox": [40, 40],
        "crop_mm": 20.0,
        "loss": "ordinal",
        "network": TINY_RESNET,
        "augment": {"rotation_deg": 5.0},
        "data": {"source": "folder", "train": "train", "validation": "val"},
    }
    config = ClassificationConfig.model_validate(options)
    ws = Workspace(root / "ws")
    task = ClassificationTaskFactory().build(config, workspace=ws, seed=0, base_dir=root)
    assert task.train_size == 60 and task.val_size == 20
    engine = EngineConfig(iterations=4, batch_size=8, validate_every=4, threads=1)
    result = fit(task, engine, run_dir=root / "run", model_path=root / "single.pt")
    assert result.metrics is not None
    assert {"quadratic_kappa", "auc_at_least_2", "mean_abs_error"} <= set(result.metrics.values)
    return root, root / "single.pt"


def test_paired_network_starts_from_the_single_networks_predictions(
    trained: tuple[Path, Path],
) -> None:
    root, single_path = trained
    net = NetworkConfig.model_validate({**TINY_RESNET, "paired": True})
    options = {
        "classes": ["0", "1", "2", "3", "4"],
        "input_size_vox": [40, 40],
        "network": net.model_dump(mode="json"),
        "init_weights": "single.pt",
        "data": {"source": "folder", "train": "train", "validation": "val"},
    }
    config = ClassificationConfig.model_validate(options)
    task = ClassificationTaskFactory().build(
        config, workspace=Workspace(root / "ws"), seed=0, base_dir=root
    )
    paired = build_network(net)
    task.initialise(paired)
    paired.eval()
    single = load_classifier(single_path)
    x = torch.randn(4, 1, 40, 40)
    with torch.no_grad():
        expected = single.network(x)
        got = paired(torch.cat([x, torch.randn(4, 1, 40, 40)], dim=1))
    assert torch.allclose(expected, got, atol=1e-5)


def test_initialising_from_another_network_is_refused(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    other = {**TINY_RESNET, "features": [8, 8, 8, 8]}
    options = {
        "classes": ["0", "1", "2", "3", "4"],
        "input_size_vox": [40, 40],
        "network": other,
        "init_weights": "single.pt",
        "data": {"source": "folder", "train": "train", "validation": "val"},
    }
    config = ClassificationConfig.model_validate(options)
    task = ClassificationTaskFactory().build(
        config, workspace=Workspace(root / "ws"), seed=0, base_dir=root
    )
    with pytest.raises(ModelError, match="not the one being trained"):
        task.initialise(build_network(NetworkConfig.model_validate(other)))


def test_temperature_sharpens_or_flattens_probabilities(trained: tuple[Path, Path]) -> None:
    root, single_path = trained
    model = load_model_file(single_path)
    for name, t in (("hot.pt", 4.0), ("cold.pt", 0.25)):
        spec = {**model.spec, "temperature": t}
        save_model_file(type(model)(**{**model.__dict__, "spec": spec}), root / name)
    images = np.random.default_rng(1).normal(size=(6, 40, 40)).astype(np.float32)
    logits = predict_logits(single_path, images)
    p_cold = grade_crops(load_kl_model(root / "cold.pt"), list(images)).probabilities
    p_warm = grade_crops(load_kl_model(root / "hot.pt"), list(images)).probabilities
    expected = np.exp(logits / 4.0) / np.exp(logits / 4.0).sum(axis=1, keepdims=True)
    assert np.allclose(p_warm, expected, atol=1e-6)
    assert (p_warm.max(axis=1) <= p_cold.max(axis=1) + 1e-9).all()


def test_knee_rois_are_cropped_to_the_models_field_of_view(trained: tuple[Path, Path]) -> None:
    _, single_path = trained
    model = load_kl_model(single_path)  # crop_mm 20 of a 40 mm ROI: the central half
    roi = np.zeros((200, 200), np.float32)
    roi[50:150, 50:150] = 1.0  # exactly the central 20 mm at 0.2 mm
    crop = crop_rois(roi[None], 0.2, model.spec.crop_mm, (40, 40))
    assert crop.shape == (1, 40, 40) and crop.min() == pytest.approx(1.0)
    graded = grade_knees(model, roi[None], None, roi_spacing_mm=0.2)
    assert graded.probabilities.shape == (1, 5)
    assert np.allclose(graded.probabilities.sum(axis=1), 1.0)
    assert graded.grades[0] == graded.probabilities[0].argmax()


def test_a_model_of_other_classes_is_not_a_kl_model(tmp_path: Path) -> None:
    from kneescope.capabilities.classification.synthetic import synthetic_classification as sc
    from kneescope.capabilities.classification.task import ClassificationTask

    config = ClassificationConfig(input_size_vox=(32, 32))
    task = ClassificationTask(config, sc(12, seed=1), sc(6, seed=2))
    fit(
        task,
        EngineConfig(iterations=1, batch_size=4, threads=1),
        run_dir=tmp_path,
        model_path=tmp_path / "bars.pt",
    )
    with pytest.raises(ModelError, match="not the KL grades"):
        load_kl_model(tmp_path / "bars.pt")


def test_kl_grade_step_grades_a_knee_roi_and_skips_an_ungradable_one(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from kneescope.capabilities.classification.kl_step import KlGrade
    from kneescope.cohort.item import Item
    from kneescope.cohort.step import StepContext

    _, single_path = trained
    step = KlGrade(model=str(single_path))
    step.setup()
    roi = np.random.default_rng(3).normal(size=(700, 700)).astype(np.float32)
    item = Item(item_id="film-1-right", path=str(tmp_path / "film-1"), side="right")
    result = step.run(item, StepContext(tmp_path, {"knee_roi": roi, "other_knee_roi": None}))
    assert set(result.values) == {c.name for c in KlGrade.results}
    expected = grade_knees(load_kl_model(single_path), roi[None]).probabilities[0]
    got = [result.values[f"kl_probability_{k}"] for k in range(5)]
    assert np.allclose(got, expected)
    assert result.values["kl_index"] == int(np.argmax(expected))
    skipped = step.run(item, StepContext(tmp_path, {"knee_roi": None, "other_knee_roi": None}))
    assert skipped.values == {}


def test_training_keeps_the_validation_temperature_and_recalibration_refits_it(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from kneescope.capabilities.classification.calibration import fit_temperature
    from kneescope.capabilities.classification.recalibrate import recalibrate

    root, single_path = trained
    model = load_model_file(single_path)
    assert model.metrics is not None
    values = model.metrics["values"]
    assert model.spec["temperature"] == pytest.approx(values["temperature"])
    assert 0.0 <= values["ece"] <= 1.0 and 0.0 <= values["ece_uncalibrated"] <= 1.0
    # a new validation set: the refitted temperature is the NLL fit of that set's logits
    data = load_class_folder(root / "train", ("0", "1", "2", "3", "4"), (40, 40))
    report = recalibrate(single_path, data, tmp_path / "recalibrated.pt")
    logits = predict_logits(single_path, data.images)
    assert report["temperature"] == pytest.approx(fit_temperature(logits, data.labels))
    again = load_kl_model(tmp_path / "recalibrated.pt")
    assert again.spec.temperature == pytest.approx(report["temperature"])
