"""Side-canonical training: left knees mirrored onto right-knee anatomy, sides from sides.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.capabilities.segmentation.training_data import (
    prepare_case,
    resolve_side_canonical,
    sides_in_folder,
)
from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.transforms.intensity import NormalisationConfig


def _knee(side: str) -> tuple[Volume, Volume]:
    """An asymmetric phantom; the left knee is its mirror image in the world (x -> -x)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((10, 12, 8), dtype=np.uint8)
    labels[1:4, 2:9, 2:6] = 4  # "medial" block at low i of the right knee
    labels[6:9, 3:7, 2:6] = 5
    image = (labels * 50.0 + rng.normal(0, 5, labels.shape)).astype(np.float32)
    affine = np.diag([1.0 if side == "right" else -1.0, 1.0, 1.0, 1.0])
    return Volume(image, affine), Volume(labels, affine)


def _prepare(side: str, canonical: bool) -> np.ndarray:
    image, labels = _knee(side)
    case = prepare_case(
        side,
        image,
        labels,
        orientation=_knee("right")[0].orientation,
        spacing_mm=(1.0, 1.0, 1.0),
        normalisation=NormalisationConfig(),
        table=None,
        classes=10,
        side=side,
        side_canonical=canonical,
    )
    assert case.mirrored == (canonical and side == "left")
    return case.labels


def test_left_knees_are_mirrored_onto_right_anatomy() -> None:
    right = _prepare("right", canonical=True)
    np.testing.assert_array_equal(_prepare("left", canonical=True), right)
    # without it, the left knee's medial block sits at the other end of the L-R axis
    np.testing.assert_array_equal(_prepare("left", canonical=False), right[::-1])


def test_sides_csv(tmp_path: Path) -> None:
    assert sides_in_folder(tmp_path) == {}
    (tmp_path / "sides.csv").write_text("name,side\na,R\nb,left\nc,2\n")
    assert sides_in_folder(tmp_path) == {"a": "right", "b": "left", "c": "left"}
    (tmp_path / "sides.csv").write_text("name,side\na,both\n")
    with pytest.raises(InputError, match="line 2"):
        sides_in_folder(tmp_path)
    (tmp_path / "sides.csv").write_text("case,knee\na,R\n")
    with pytest.raises(InputError, match="name,side"):
        sides_in_folder(tmp_path)


def test_side_canonical_resolution() -> None:
    auto = SegmentationTrainConfig()
    assert resolve_side_canonical(auto, ["right", "left"]) is True
    assert resolve_side_canonical(auto, ["right", None]) is False
    assert resolve_side_canonical(SegmentationTrainConfig(side_canonical=False), ["left"]) is False
    with pytest.raises(InputError, match=r"sides\.csv"):
        resolve_side_canonical(SegmentationTrainConfig(side_canonical=True), ["left", None])
