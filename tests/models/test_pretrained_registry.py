"""The shipped-model machinery on a release made here: benchmarks/release_models.py writes a
folder (float16 weights, cards, index.json); names, aliases and the default resolve to it
in the documented order; a changed file or a wrong index is one clear error; model cards are
deterministic and carry the hash, limits and test-set numbers.

The real shipped models are tested in test_pretrained_shipped.py."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from kneescope.errors import ModelError, NotFoundError
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
from kneescope.io.digest import file_sha256
from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_card import CardInputs, render_model_card
from kneescope.models.model_file import load_model_file
from kneescope.models.pretrained import (
    DEFAULT_MODEL,
    PRETRAINED_DIR_ENV,
    find_shipped,
    read_index,
    resolve_model,
    shipped_model,
    shipped_models,
)
from kneescope.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _release_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "release_models", ROOT / "benchmarks" / "release_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["release_models"] = module  # pydantic resolves the models' annotations there
    spec.loader.exec_module(module)
    return module


def tiny_model(path: Path, seed: int = 0) -> Path:
    """A small 3D segmentation model file (untrained: these tests are about files)."""
    config = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=3, features=(4, 8), strides=(2,)
    )
    torch.manual_seed(seed)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={1: "femur", 2: "femoral_cartilage"},
        spacing_mm=(1.0, 1.0, 1.0),
        roi_size_vox=(8, 8, 8),
    )
    state = build_network(config).state_dict()
    return save_model(SegmentationModel(spec=spec, state_dict=state), path)


def _report(sha256: str, dice_femur: float) -> dict[str, Any]:
    """A results file shaped like benchmarks/evaluate_segmentation.py --json writes it."""
    return {
        "set": {"name": "test-id", "set_sha256": "ab" * 32, "knees": 20},
        "model": {"sha256": sha256},
        "summary": {
            "knees": 20,
            "qc_ok": 19,
            "dice": {
                "femur": {"mean": dice_femur, "worst": 0.9512, "worst_knee": "k3"},
                "femoral_cartilage": {"mean": 0.9012, "worst": 0.8123, "worst_knee": "k7"},
            },
            "hd95_mm": {
                "femur": {"mean": 0.71, "worst": 1.93, "missing": 0},
                "femoral_cartilage": {"mean": 0.52, "worst": "inf", "missing": 1},
            },
            "thickness_error_mm": {
                "femoral": {"mean": 0.0812, "bias": -0.0312, "worst": 0.2234, "missing": 0}
            },
        },
        "by_variant": {},
    }


def _write_spec(folder: Path, models: list[dict[str, Any]], aliases: dict[str, str]) -> Path:
    path = folder / "release.json"
    spec = {"hardware": "test machine", "aliases": aliases, "models": models}
    path.write_text(json.dumps(spec))
    return path


def release(tmp_path: Path, results: bool = False) -> tuple[Path, Path, Path]:
    """Release two tiny models into ``tmp_path/shipped``; returns (folder, 2d source, docs)."""
    src = tmp_path / "trained"
    a = tiny_model(src / "a.pt", seed=0)
    b = tiny_model(src / "b.pt", seed=1)
    model_a: dict[str, Any] = {
        "name": "knee-seg-2d",
        "file": str(a),
        "summary": "first",
        "default_for": ["kneescope segment"],
        "budget": "1 minute",
        "training_data": "none",
    }
    if results:
        report = tmp_path / "a-test-id.json"
        report.write_text(json.dumps(_report(file_sha256(a), 0.98765)))
        model_a["results"] = [{"title": "In-distribution test set", "file": str(report)}]
    spec = _write_spec(
        tmp_path,
        [model_a, {"name": "knee-seg-3d", "file": str(b), "summary": "second"}],
        {"knee-seg": "knee-seg-2d"},
    )
    folder = tmp_path / "shipped"
    docs = tmp_path / "models.md"
    module = _release_module()
    assert module.main(["--spec", str(spec), "--out", str(folder), "--docs", str(docs)]) == 0
    return folder, a, docs


def test_release_writes_float16_files_cards_and_index(tmp_path: Path) -> None:
    folder, source, docs = release(tmp_path, results=True)
    index = read_index(folder)
    assert [m.name for m in index.models] == ["knee-seg-2d", "knee-seg-3d"]
    assert index.aliases == {"knee-seg": "knee-seg-2d"}
    for entry in index.models:
        path = folder / entry.file
        assert file_sha256(path) == entry.sha256 and path.stat().st_size == entry.size_bytes
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert raw["weights_dtype"] == "float16"
        card = (folder / entry.card).read_text()
        assert entry.sha256 in card
        assert "not validated on real scans" in card
    # The weights are the source's, rounded to float16.
    shipped = load_model_file(folder / "knee-seg-2d.pt").state_dict
    for name, tensor in load_model_file(source).state_dict.items():
        assert torch.equal(shipped[name], tensor.half().float()), name
    # The results went into the card and the docs page, as they came out.
    card = (folder / "knee-seg-2d.md").read_text()
    assert "| femur | 0.988 | 0.951 | 0.71 | 1.93 |" in card
    assert "| femoral_cartilage | 0.901 | 0.812 | 0.52 | inf |" in card
    assert "| femoral | 0.081 | -0.031 | 0.223 |" in card
    assert "Not evaluated on a test set yet." in (folder / "knee-seg-3d.md").read_text()
    text = docs.read_text()
    assert text.startswith("# Shipped models") and "## knee-seg-2d" in text
    assert "| femur | 0.988 |" in text
    # A second release of the same models writes the same bytes.
    before = {p.name: file_sha256(p) for p in folder.iterdir()}
    release(tmp_path, results=True)
    assert {p.name: file_sha256(p) for p in folder.iterdir()} == before


def test_release_refuses_results_of_another_model_and_oversized_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _release_module()
    a = tiny_model(tmp_path / "a.pt")
    other = tiny_model(tmp_path / "other.pt", seed=5)
    report = tmp_path / "r.json"
    report.write_text(json.dumps(_report(file_sha256(other), 0.9)))
    spec = _write_spec(
        tmp_path,
        [{"name": "m", "file": str(a), "results": [{"title": "t", "file": str(report)}]}],
        {},
    )
    out = tmp_path / "shipped"
    assert module.main(["--spec", str(spec), "--out", str(out), "--no-docs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: results file") and "not of m" in err
    assert not (out / "index.json").exists() and not list(out.glob("*.pt"))  # nothing half

    monkey_limit = module.SIZE_LIMIT_BYTES
    try:
        module.SIZE_LIMIT_BYTES = 1000
        spec = _write_spec(tmp_path, [{"name": "m", "file": str(a)}], {})
        assert module.main(["--spec", str(spec), "--out", str(out), "--no-docs"]) == 2
        assert "more than the" in capsys.readouterr().err
        assert not list(out.iterdir())
    finally:
        module.SIZE_LIMIT_BYTES = monkey_limit


def test_names_resolve_in_the_documented_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _, _ = release(tmp_path)
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    ws = Workspace.resolve(tmp_path / "ws")
    shipped_2d = (folder / "knee-seg-2d.pt").absolute()
    # No value and the alias: the shipped default (the 2D model).
    assert resolve_model(None, ws) == shipped_2d
    assert resolve_model(DEFAULT_MODEL, ws) == shipped_2d
    assert resolve_model("knee-seg-3d", ws) == (folder / "knee-seg-3d.pt").absolute()
    assert resolve_model("knee-seg-3d") == (folder / "knee-seg-3d.pt").absolute()
    # A model of the workspace with that name comes first...
    mine = tiny_model(ws.models_dir / "knee-seg.pt", seed=3)
    assert resolve_model("knee-seg", ws) == mine.absolute()
    assert resolve_model(None, ws) == mine.absolute()
    # ... and a file path before both.
    (tmp_path / "here").mkdir()
    beside = tiny_model(tmp_path / "here" / "knee-seg", seed=4)
    assert resolve_model("knee-seg", ws, tmp_path / "here") == beside.absolute()
    # Nothing: today's one line, naming what would have worked.
    with pytest.raises(ModelError) as err:
        resolve_model("nope", ws)
    message = str(err.value)
    assert message.startswith("model nope not found (looked in the current folder and ")
    assert "knee-seg, knee-seg-2d, knee-seg-3d" in message and "\n" not in message
    assert [m.name for m in shipped_models()] == ["knee-seg-2d", "knee-seg-3d"]
    assert shipped_model("knee-seg").aliases == ("knee-seg",)
    with pytest.raises(NotFoundError, match="no shipped model 'x'"):
        shipped_model("x")


def test_a_changed_shipped_file_or_a_broken_index_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _, _ = release(tmp_path)
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    path = folder / "knee-seg-3d.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="changed or damaged: reinstall kneescope"):
        resolve_model("knee-seg-3d")
    path.unlink()
    with pytest.raises(ModelError, match="is missing; reinstall kneescope"):
        resolve_model("knee-seg-3d")
    assert resolve_model("knee-seg") == (folder / "knee-seg-2d.pt").absolute()  # still fine

    index = json.loads((folder / "index.json").read_text())
    index["aliases"] = {"knee-seg": "knee-seg-9d"}
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(
        ModelError, match=r"index .* is invalid: alias 'knee-seg' names 'knee-seg-9d'"
    ):
        find_shipped("knee-seg")
    (folder / "index.json").write_text("{")
    with pytest.raises(ModelError, match="unreadable"):
        find_shipped("knee-seg")
    (folder / "index.json").unlink()  # no index: nothing shipped, today's message
    with pytest.raises(ModelError) as err:
        resolve_model("knee-seg")
    assert str(err.value) == (
        "model knee-seg not found (looked in the current folder); "
        "train one with `kneescope train` or give the model file's path"
    )


def test_model_card_is_deterministic_and_complete(tmp_path: Path) -> None:
    model = load_model_file(tiny_model(tmp_path / "m.pt"))
    inputs = CardInputs(
        name="knee-seg-2d",
        sha256="cd" * 32,
        size_bytes=3_300_000,
        summary="A model.",
        aliases=("knee-seg",),
        default_for=("kneescope segment",),
        weights_dtype="float16",
        budget="55 min, 1 thread",
        hardware="2 CPU cores",
        training_data="24 synthetic knees, seeds 500000-500023",
        results=(("In-distribution", _report("ef" * 32, 0.97)),),
    )
    card = render_model_card(model, inputs)
    assert card == render_model_card(model, inputs)
    assert card.endswith("\n") and not card.endswith("\n\n")
    for heading in ("## Intended use", "## Limits", "## Training", "## Results on the locked"):
        assert heading in card
    assert "Trained on synthetic images only" in card
    assert "not validated on real scans" in card
    assert "`" + "cd" * 32 + "`" in card
    assert "24 synthetic knees, seeds 500000-500023" in card
    assert "55 min, 1 thread" in card and "2 CPU cores" in card
    assert "| femur | 0.970 | 0.951 | 0.71 | 1.93 |" in card
    assert re.search(r"20 knees, 19 QC-pass", card)
    assert "2: femur, femoral_cartilage" in card


def test_an_added_release_keeps_the_models_already_shipped(tmp_path: Path) -> None:
    folder, _, docs = release(tmp_path)
    before = {p.name: file_sha256(p) for p in folder.iterdir() if p.suffix in (".pt", ".md")}
    extra = tiny_model(tmp_path / "trained" / "c.pt", seed=2)
    model_c = {
        "name": "kl-test",
        "file": str(extra),
        "summary": "third",
        "task": "knee radiograph KL grade",
        "intended_use": "Grading test knees.",
        "limits": ["- only a test"],
        "usage": "kneescope xray -m kl-test -i FILM",
    }
    spec = _write_spec(tmp_path / "trained", [model_c], {"kl": "kl-test"})
    module = _release_module()
    args = ["--spec", str(spec), "--out", str(folder), "--docs", str(docs), "--add"]
    assert module.main(args) == 0
    index = read_index(folder)
    assert [m.name for m in index.models] == ["knee-seg-2d", "knee-seg-3d", "kl-test"]
    assert index.aliases == {"knee-seg": "knee-seg-2d", "kl": "kl-test"}
    assert index.models[2].task == "knee radiograph KL grade"
    for name, sha in before.items():  # the earlier models' files are untouched
        assert file_sha256(folder / name) == sha
    card = (folder / "kl-test.md").read_text()
    assert "Grading test knees." in card and "kneescope xray -m kl-test -i FILM" in card
    text = docs.read_text()
    assert "## knee-seg-2d" in text and "## kl-test" in text
