"""The models shipped in the package (src/kneescope/pretrained/): every model index.json lists
loads with ``torch.load(weights_only=True)``, its sha256 is the one in the index and in its
model card, all weights together stay within 25 MB, and each segments a synthetic knee it has
never seen with Dice above the floors below (real accuracy, not a smoke test).

The synthetic knees (one left, one right) are rendered at the models' in-plane spacing (OAI
DESS, 0.365 mm) over 93 mm around the joint, in 32 sagittal slices of 3.5 mm that cover the
whole knee from side to side (thick slices keep the test to seconds; the medial/lateral
clean-up needs the whole tibia).
Seeds 800_001 and 800_002 are in the development range (< 1_000_000) but not in the training
bank (benchmarks/shipped_models.py: 500_000 + n); the locked test sets are elsewhere
(benchmarks/model_test_sets.py). With $KNEESCOPE_PRETRAINED_DIR set, that folder is tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import torch

from kneescope.core.labels import KNEE_LABELS
from kneescope.io.digest import file_sha256
from kneescope.models.model_file import load_model_file
from kneescope.models.pretrained import (
    DEFAULT_MODEL,
    ShippedModel,
    pretrained_dir,
    read_index,
    shipped_models,
)

SIZE_LIMIT_BYTES = 25_000_000
"""All shipped weights together (issue 13)."""

REQUIRED = ("knee-seg-2d",)
"""The models the package must ship; ``knee-seg`` is an alias of the 2D one. (A 3D model is
not shipped yet: the first one trained reached validation Dice 0.00-0.73 in the time it got,
docs/models.md.)"""

DICE_FLOORS = {
    "femur": 0.90,
    "tibia": 0.90,
    "patella": 0.88,
    "femoral_cartilage": 0.85,
    "medial_tibial_cartilage": 0.85,
    "lateral_tibial_cartilage": 0.85,
    "patellar_cartilage": 0.85,
    "medial_meniscus": 0.65,
    "lateral_meniscus": 0.65,
}
"""Lowest Dice per structure on the test knees (pooled over both). knee-seg-2d measured
0.943 femur, 0.892 femoral cartilage, 0.957 tibia, 0.921 / 0.942 medial / lateral tibial
cartilage, 0.913 patella, 0.924 patellar cartilage, 0.743 / 0.782 medial / lateral meniscus
on them (3.5 mm slices: lower than on the OAI grid, docs/models.md)."""


def _listed(kind: str = "segmentation") -> list[str]:
    """Names of the index's models of ``kind`` (a placeholder when it lists none, so that the
    tests below fail instead of being collected as an empty, skipped set). Models of other
    kinds (landmarks, classification) are tested by their capabilities' tests."""
    models = read_index(pretrained_dir()).models
    return [m.name for m in models if m.kind == kind] or ["<index.json lists none>"]


def _model(name: str) -> ShippedModel:
    found = {m.name: m for m in shipped_models(pretrained_dir())}
    assert name in found, f"{pretrained_dir()}/index.json lists no shipped model"
    return found[name]


def test_the_package_ships_the_knee_models() -> None:
    index = read_index(pretrained_dir())
    names = [m.name for m in index.models]
    assert names, f"{pretrained_dir()}/index.json lists no shipped model"
    for name in REQUIRED:
        assert name in names
    assert index.aliases.get(DEFAULT_MODEL) == "knee-seg-2d"


def test_shipped_weights_fit_in_25_mb() -> None:
    folder = pretrained_dir()
    files = sorted(folder.glob("*.pt"))
    listed = {m.file for m in read_index(folder).models}
    assert files and {f.name for f in files} == listed  # no stray or missing weights
    assert sum(f.stat().st_size for f in files) <= SIZE_LIMIT_BYTES


@pytest.mark.parametrize("name", _listed())
def test_shipped_model_loads_weights_only_and_matches_its_card(name: str) -> None:
    model = _model(name)
    raw = torch.load(model.path, map_location="cpu", weights_only=True)
    assert raw["format"] == "kneescope-model" and raw["kind"] == "segmentation"
    assert raw.get("weights_dtype") in ("float16", "bfloat16")
    sha = file_sha256(model.path)
    assert sha == model.entry.sha256
    assert model.path.stat().st_size == model.entry.size_bytes
    card = model.card_text()
    assert re.findall(r"[0-9a-f]{64}", card)[0] == sha  # the card's weights hash
    assert card.startswith(f"# {name}\n")
    assert "not validated on real scans" in card
    loaded = load_model_file(model.verified_path(), kind="segmentation")
    names = {int(k): v for k, v in loaded.spec["labels"].items()}
    assert names == dict(KNEE_LABELS.labels)


@dataclass(frozen=True)
class _Slab:
    image: object
    labels: np.ndarray
    side: str


@cache
def _test_knee() -> tuple[_Slab, ...]:
    """Two slabs of two unseen synthetic knees on the OAI DESS grid (see the docstring)."""
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import FULL, SizeSpec, sample_knee_params

    slabs = []
    for seed, side, klg in ((800_001, "left", 2), (800_002, "right", 1)):
        params = sample_knee_params(np.random.default_rng(seed), side=side, klg=klg)
        # the field of view's centre, canonical frame (mm): FOV_CENTRE_CANONICAL + offset;
        # the whole knee from side to side (32 slices of 3.5 mm), 93 mm in-plane around the
        # joint and the patella, so the medial/lateral clean-up sees the whole tibia
        params = params.model_copy(update={"offset_mm": (0.0, 5.0, 2.0)})
        size = SizeSpec(
            name="whole-knee", shape=(32, 256, 256), spacing_mm=(3.5, *FULL.spacing_mm[1:])
        )
        sample = render_knee(params, size)
        slabs.append(_Slab(sample.image, sample.labels.array.copy(), side))
    return tuple(slabs)


@pytest.mark.parametrize("name", _listed())
def test_shipped_model_segments_an_unseen_synthetic_knee(name: str) -> None:
    from kneescope.inference.segmenter import SegmentConfig, Segmenter

    model = _model(name)
    segmenter = Segmenter(model.verified_path(), SegmentConfig(device="cpu"))
    inter = np.zeros(10)
    total = np.zeros(10)
    truth_voxels = np.zeros(10)
    for slab in _test_knee():
        pred = segmenter.segment(slab.image, side=slab.side).labels.array  # type: ignore[arg-type]
        for v in range(1, 10):
            p, t = pred == v, slab.labels == v
            inter[v] += np.count_nonzero(p & t)
            total[v] += np.count_nonzero(p) + np.count_nonzero(t)
            truth_voxels[v] += np.count_nonzero(t)
    dice = {n: float(2 * inter[v] / total[v]) for v, n in KNEE_LABELS.labels.items()}
    assert all(truth_voxels[1:] > 1000), truth_voxels  # every structure is in the test knee
    low = {n: round(d, 3) for n, d in dice.items() if d < DICE_FLOORS[n]}
    assert not low, f"{name}: Dice below the floor for {low} (all: {dice})"
