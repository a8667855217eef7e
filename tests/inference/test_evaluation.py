"""Evaluation metrics (Dice, HD95, thickness error) and the locked evaluation sets.

The metric tests use label maps whose scores are known exactly (a box shifted by whole
voxels on an anisotropic grid); the set tests make a one-knee set on the small grid with
benchmarks/model_test_sets.py and score its own label maps with
benchmarks/evaluate_segmentation.py --truth-labels.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from kneescope.errors import InputError, NotFoundError
from kneescope.inference.evaluation import (
    dice_per_label,
    hd95_per_label,
    summarise,
    thickness_errors,
    verify_set_manifest,
    write_set_manifest,
)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SPACING = (2.0, 0.5, 1.0)


def _box(shape: tuple[int, int, int], lo: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    arr = np.zeros(shape, dtype=np.uint8)
    arr[tuple(slice(a, a + n) for a, n in zip(lo, size, strict=True))] = 1
    return arr


@pytest.mark.parametrize(("axis", "shift"), [(0, 1), (1, 2), (2, 3)])
def test_dice_and_hd95_of_a_box_shifted_by_whole_voxels(axis: int, shift: int) -> None:
    size = (10, 12, 14)
    truth = _box((30, 30, 30), (5, 5, 5), size)
    lo = [5, 5, 5]
    lo[axis] += shift
    pred = _box((30, 30, 30), tuple(lo), size)

    dice = dice_per_label(pred, truth, labels=(1,))
    hd = hd95_per_label(pred, truth, SPACING, labels=(1,))

    # overlap loses `shift` of the box's extent along the axis
    assert dice[1] == pytest.approx(1.0 - shift / size[axis])
    # the faces across the shift (> 5 % of the surface) lie exactly shift voxels apart
    assert hd[1] == pytest.approx(shift * SPACING[axis], abs=1e-5)


def test_identical_maps_score_dice_one_and_hd95_zero() -> None:
    truth = _box((20, 20, 20), (3, 4, 5), (6, 7, 8))
    truth[truth == 0] = 0
    truth[10:12, 4:11, 5:13] = 2
    assert dice_per_label(truth, truth, labels=(1, 2)) == {1: 1.0, 2: 1.0}
    assert hd95_per_label(truth, truth, SPACING, labels=(1, 2)) == {1: 0.0, 2: 0.0}


def test_a_structure_missing_from_one_map_scores_zero_and_inf_and_absent_ones_nan() -> None:
    truth = _box((20, 20, 20), (3, 4, 5), (6, 7, 8))
    pred = np.zeros_like(truth)
    dice = dice_per_label(pred, truth, labels=(1, 2))
    hd = hd95_per_label(pred, truth, SPACING, labels=(1, 2))
    assert dice[1] == 0.0
    assert hd[1] == math.inf
    assert math.isnan(dice[2])
    assert math.isnan(hd[2])


def test_maps_of_different_shapes_are_refused() -> None:
    with pytest.raises(InputError, match="differ in shape"):
        dice_per_label(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8))


def test_summary_gives_mean_and_worst_knee_and_counts_missing_structures() -> None:
    dice = summarise([{"femur": 0.9}, {"femur": 0.7}, {"femur": 0.0}], kind="dice")["femur"]
    assert dice["mean"] == pytest.approx(1.6 / 3)
    assert (dice["worst"], dice["worst_knee"], dice["missing"]) == (0.0, 2, 1)

    hd = summarise([{"femur": 1.0}, {"femur": math.inf}, {"femur": 3.0}], kind="hd95")["femur"]
    assert hd["mean"] == pytest.approx(2.0)  # over the knees where both maps have it
    assert (hd["worst"], hd["worst_knee"], hd["missing"]) == (math.inf, 1, 1)

    errors = [{"femoral": 0.1}, {"femoral": -0.3}, {"femoral": math.nan}]
    err = summarise(errors, kind="error")["femoral"]
    assert err["mean"] == pytest.approx(0.2)  # mean |error| of the measured knees
    assert err["bias"] == pytest.approx(-0.1)
    assert (err["worst"], err["worst_knee"], err["missing"]) == (pytest.approx(0.3), 1, 1)


def test_thickness_error_is_measured_minus_truth_and_nan_when_unmeasured() -> None:
    measured = {"femoral_cartilage_thickness_mean_mm": 2.25}
    out = thickness_errors(measured, {"femoral": 2.0, "patellar": 3.0}, ("femoral", "patellar"))
    assert out["femoral"] == pytest.approx(0.25)
    assert math.isnan(out["patellar"])


# --- set manifests -----------------------------------------------------------------------------


def _tiny_set(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.nii.gz").write_bytes(b"image a")
    (folder / "truth.csv").write_text("name,plate\na,femoral\n")
    write_set_manifest(folder, {"name": "tiny"})
    return folder


def test_an_untouched_set_verifies_and_its_digest_is_checked(tmp_path: Path) -> None:
    folder = _tiny_set(tmp_path / "set")
    manifest = verify_set_manifest(folder)
    assert set(manifest["files"]) == {"images/a.nii.gz", "truth.csv"}
    assert verify_set_manifest(folder, manifest["set_sha256"]) == manifest
    with pytest.raises(InputError, match="not the expected"):
        verify_set_manifest(folder, "0" * 64)


def _same_bytes_by_symlink(path: Path) -> None:
    outside = path.parent.parent / "outside.csv"
    path.rename(outside)
    path.symlink_to(outside)  # the same bytes, but a file the set does not hold


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda f: (f / "images" / "a.nii.gz").write_bytes(b"image b"), "changed 1 file"),
        (lambda f: (f / "truth.csv").unlink(), "missing 1 file"),
        (lambda f: (f / "images" / "b.nii.gz").write_bytes(b"new"), "added 1 file"),
        (lambda f: _same_bytes_by_symlink(f / "truth.csv"), "not a regular file"),
    ],
)
def test_a_modified_set_is_refused(tmp_path: Path, edit, problem: str) -> None:  # type: ignore[no-untyped-def]
    folder = _tiny_set(tmp_path / "set")
    edit(folder)
    with pytest.raises(InputError, match=problem):
        verify_set_manifest(folder)


def test_an_edited_manifest_or_none_is_refused(tmp_path: Path) -> None:
    folder = _tiny_set(tmp_path / "set")
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    (folder / "truth.csv").write_text("forged\n")
    manifest["files"]["truth.csv"] = "f" * 64  # a forger who edits the list too
    path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="was edited"):
        verify_set_manifest(folder)
    path.unlink()
    with pytest.raises(NotFoundError, match=r"model_test_sets\.py make"):
        verify_set_manifest(folder)


# --- the benchmark scripts on a one-knee small set ---------------------------------------------


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sets") / "val-small"
    args = ["make", "--set", "val", "-o", str(out), "--size", "small", "--limit", "1"]
    assert _script("model_test_sets").main([*args, "--allow-dirty"]) == 0
    return out


def test_a_made_set_holds_images_labels_tissues_truth_and_a_manifest(small_set: Path) -> None:
    manifest = verify_set_manifest(small_set)
    assert manifest["set"]["name"] == "val"
    assert manifest["set"]["complete"] is False  # small grid, one knee: not the locked set
    assert set(manifest["files"]) >= {
        "images/val-000.nii.gz",
        "labels/val-000.nii.gz",
        "tissues/val-000.nii.gz",
        "params/val-000.json",
        "sides.csv",
        "knees.csv",
        "truth.csv",
    }
    assert (small_set / "sides.csv").read_text() == "name,side\nval-000,right\n"
    params = json.loads((small_set / "params" / "val-000.json").read_text())
    assert params["seed"] == 2_000_000  # the validation range, never a development seed


def test_make_refuses_an_existing_folder(
    small_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (small_set / "manifest.json").read_bytes()
    args = ["make", "--set", "val", "-o", str(small_set), "--size", "small", "--allow-dirty"]
    assert _script("model_test_sets").main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "exists" in err and err.count("\n") == 1
    assert (small_set / "manifest.json").read_bytes() == before


def test_truth_labels_score_perfectly_and_their_thickness_error_is_small(
    small_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "truth.json"
    args = ["--truth-labels", "-i", str(small_set), "--json", str(out)]
    assert _script("evaluate_segmentation").main(args) == 0
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert report["set"]["set_sha256"] == verify_set_manifest(small_set)["set_sha256"]
    assert {d["mean"] for d in summary["dice"].values()} == {1.0}
    assert {h["worst"] for h in summary["hd95_mm"].values()} == {0.0}
    # the floor of the measurement on the small grid (2.3 x 1.1 x 1.1 mm voxels): measured
    # from the exact label map, each plate's mean thickness is within 0.25 mm of the truth
    errors = report["knees"][0]["thickness_error_mm"]
    assert set(errors) == {"femoral", "medial_tibial", "lateral_tibial", "patellar"}
    assert all(abs(e) < 0.25 for e in errors.values()), errors
    assert report["knees"][0]["thickness_error_vs_label_map_mm"] == dict.fromkeys(errors, 0.0)


def test_evaluation_refuses_a_modified_set_before_any_work(
    small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small_set, copy)
    image = copy / "images" / "val-000.nii.gz"
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF
    image.write_bytes(bytes(data))
    out = tmp_path / "r.json"
    args = ["--truth-labels", "-i", str(copy), "--json", str(out)]
    assert _script("evaluate_segmentation").main(args) == 2
    err = capsys.readouterr().err
    assert "changed 1 file(s) (images/val-000.nii.gz)" in err and err.count("\n") == 1
    assert not out.exists()


def test_the_set_plans_cover_sides_grades_and_variants_from_their_own_seed_ranges() -> None:
    from collections import Counter

    sets = _script("model_test_sets")
    plans = {name: sets.set_plan(name) for name in ("val", "test-id", "test-ood")}
    test_id, ood = plans["test-id"], plans["test-ood"]
    assert len(test_id) == 20
    assert Counter((p.klg, p.side) for p in test_id) == {
        (g, s): 2 for g in range(5) for s in ("right", "left")
    }
    assert len(ood) == 24
    assert Counter((p.variant, p.side) for p in ood) == {
        (v, s): 2 for v in sets.OOD_VARIANTS for s in ("right", "left")
    }
    assert len(plans["val"]) == 6
    seeds = [p.seed for plan in plans.values() for p in plan]
    assert len(set(seeds)) == len(seeds)
    assert min(seeds) >= 1_000_000  # development and training stay below
    ranges = {name: {p.seed // 100_000 for p in plan} for name, plan in plans.items()}
    assert ranges == {"val": {20}, "test-id": {91}, "test-ood": {92}}
