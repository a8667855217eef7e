"""`kneescope models list|show`, and `kneescope segment` / the `segment` step without a model:
the shipped default. Run against a shipped-model folder made here (KNEESCOPE_PRETRAINED_DIR)
so that they test the commands, not the real weights (test_pretrained_shipped.py does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
from kneescope.io import write_nifti
from kneescope.io.digest import file_sha256
from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_card import CardInputs, render_model_card
from kneescope.models.model_file import load_model_file, save_model_file
from kneescope.models.pretrained import (
    PRETRAINED_DIR_ENV,
    PretrainedIndex,
    ShippedEntry,
    write_index,
)


def _tiny(path: Path, seed: int) -> Path:
    config = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=3, features=(4, 8), strides=(2,)
    )
    torch.manual_seed(seed)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={1: "femur", 2: "tibia"},
        spacing_mm=(1.0, 1.0, 1.0),
        roi_size_vox=(8, 8, 8),
    )
    return save_model(SegmentationModel(spec, build_network(config).state_dict()), path)


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shipped-model folder with knee-seg-2d (alias knee-seg) and knee-seg-3d."""
    folder = tmp_path / "shipped"
    entries = []
    for seed, name in enumerate(("knee-seg-2d", "knee-seg-3d")):
        model = load_model_file(_tiny(tmp_path / f"{name}-src.pt", seed))
        path = save_model_file(model, folder / f"{name}.pt", weights_dtype="float16")
        sha = file_sha256(path)
        card = render_model_card(
            model, CardInputs(name=name, sha256=sha, size_bytes=path.stat().st_size)
        )
        (folder / f"{name}.md").write_text(card)
        entries.append(
            ShippedEntry(
                name=name,
                file=path.name,
                card=f"{name}.md",
                sha256=sha,
                size_bytes=path.stat().st_size,
                kind="segmentation",
                task="3d knee MRI, 2 structures",
                summary=f"the {name} test model",
                default_for=("kneescope segment",) if seed == 0 else (),
            )
        )
    write_index(folder, PretrainedIndex(aliases={"knee-seg": "knee-seg-2d"}, models=tuple(entries)))
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    return folder


def test_models_list_and_show(shipped: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["folder"] == str(shipped)
    rows = {r["name"]: r for r in listed["models"]}
    assert list(rows) == ["knee-seg-2d", "knee-seg-3d"]
    two = rows["knee-seg-2d"]
    assert two["aliases"] == ["knee-seg"] and two["default_for"] == ["kneescope segment"]
    assert two["sha256"] == file_sha256(shipped / "knee-seg-2d.pt")
    assert two["size_bytes"] == (shipped / "knee-seg-2d.pt").stat().st_size
    assert two["kind"] == "segmentation" and two["task"] == "3d knee MRI, 2 structures"

    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert "knee-seg-2d" in table and "knee-seg-3d" in table
    assert two["sha256"][:12] in table

    assert main(["models", "show", "knee-seg"]) == 0  # the alias: the 2D model's card
    assert capsys.readouterr().out == (shipped / "knee-seg-2d.md").read_text() + "\n"

    assert main(["models", "show", "knee-seg-3d", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "knee-seg-3d" and shown["card_text"].startswith("# knee-seg-3d")
    assert shown["spec"]["mode"] == "3d" and shown["network"]["features"] == [4, 8]


def test_models_errors_are_one_line(
    shipped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert main(["models", "show", "knee-seg-4d", "-w", str(ws)]) == 3
    err = capsys.readouterr().err
    assert err == (
        f"error: model knee-seg-4d not found (looked in the current folder and {ws / 'models'}); "
        "train one with `kneescope train` or give the model file's path, or a shipped model's "
        "name: knee-seg, knee-seg-2d, knee-seg-3d\n"
    )
    assert main(["models", "show"]) == 2
    assert capsys.readouterr().err.startswith("error: `kneescope models show` needs a model")
    assert main(["models", "remove"]) == 2  # not an action: usage error
    assert "Traceback" not in capsys.readouterr().err
    (shipped / "knee-seg-3d.pt").write_bytes(b"changed")
    assert main(["models", "show", "knee-seg-3d"]) == 1
    assert "changed or damaged: reinstall kneescope" in capsys.readouterr().err


def test_models_lists_and_shows_the_workspace_models_too(
    shipped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    mine = _tiny(ws / "models" / "mine.pt", seed=3)
    (ws / "models" / "broken.pt").write_bytes(b"not a model")
    assert main(["models", "-w", str(ws), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed["models"]] == ["knee-seg-2d", "knee-seg-3d"]
    local = {r["name"]: r for r in listed["workspace_models"]}
    assert local["mine"]["sha256"] == file_sha256(mine)
    assert local["mine"]["task"] == "3d segmentation, 2 structures"
    assert local["broken"]["kind"] is None and "corrupt" in local["broken"]["problem"]
    assert main(["models", "list", "-w", str(ws)]) == 0
    text = capsys.readouterr().out
    assert "mine: segmentation, 3d segmentation, 2 structures" in text and "broken:" in text
    assert main(["models", "show", "mine", "-w", str(ws)]) == 0
    card = capsys.readouterr().out
    assert card.startswith("# mine\n") and file_sha256(mine) in card
    assert "Not a shipped model" in card and "## Limits" not in card


def test_segment_without_a_model_uses_the_shipped_default(
    shipped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    image = Volume(rng.normal(100, 20, (12, 16, 10)).astype(np.float32), np.eye(4))
    path = write_nifti(image, tmp_path / "knee.nii.gz")
    ws = tmp_path / "ws"
    out = tmp_path / "out"
    assert main(["segment", str(path), "-w", str(ws), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(shipped / "knee-seg-2d.pt")
    sidecar = json.loads(Path(report["outputs"][0]["sidecar"]).read_text())
    assert sidecar["model_sha256"] == file_sha256(shipped / "knee-seg-2d.pt")
    # A shipped name, and a workspace model of the same name first.
    argv = ["segment", str(path), "-w", str(ws), "-o", str(out), "--overwrite", "--json"]
    assert main([*argv, "-m", "knee-seg-3d"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(shipped / "knee-seg-3d.pt")
    mine = _tiny(ws / "models" / "knee-seg.pt", seed=7)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(mine)


def test_the_segment_step_defaults_to_the_shipped_model(shipped: Path, tmp_path: Path) -> None:
    from kneescope.capabilities.segmentation.step import Segment
    from kneescope.cohort.pipeline_config import StepConfig
    from kneescope.cohort.step_registry import prepare_steps
    from kneescope.workspace import Workspace

    ws = Workspace.resolve(tmp_path / "ws")
    default = file_sha256(shipped / "knee-seg-2d.pt")[:16]
    three = file_sha256(shipped / "knee-seg-3d.pt")[:16]
    load = StepConfig(name="load_volume")
    prepared = prepare_steps([load, StepConfig(name="segment", options={})], ws, tmp_path)
    assert prepared.model_hash != ""
    assert Segment.model_hash_for({}) == default
    step = Segment(**dict(prepared.configs[1].options))
    assert step.model_path == shipped / "knee-seg-2d.pt" and step.model_hash == default
    named = prepare_steps(
        [load, StepConfig(name="segment", options={"model": "knee-seg-3d"})], ws, tmp_path
    )
    assert named.configs[1].options["model"] == str(shipped / "knee-seg-3d.pt")
    assert Segment(**dict(named.configs[1].options)).model_hash == three
    assert named.model_hash != prepared.model_hash
