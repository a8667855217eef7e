"""`kneescope plan --slabs N`: the whole volume in slabs when no plain step fits it.

A trained DynUNet of the nnU-Net layout (few channels, a 32x64x64 volume) and a budget
between what its cheapest slab step and its cheapest plain step need (both predicted here
the way the planner predicts them): without --slabs the whole volume does not fit, with
--slabs 8 it does, "in slabs of 8 slices", and the JSON says so. Bad --slabs values are one
line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kneescope.cli.app import main

SHAPE = (32, 64, 64)


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Predictions cached in the test's folder, not the user's."""
    monkeypatch.setenv("KNEESCOPE_CACHE_DIR", str(tmp_path / "cache"))


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def _tiny_model(ws: Path) -> None:
    import torch

    from kneescope.core.labels import KNEE_LABELS
    from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
    from kneescope.models import NetworkConfig, build_network

    config = NetworkConfig(
        name="dynunet", spatial_dims=3, out_channels=10, features=(4, 8, 8), strides=(1, 2, 2)
    )
    torch.manual_seed(0)
    spec = ModelSpec(
        network=config, mode="3d", labels=dict(KNEE_LABELS.labels), spacing_mm=(1.0, 1.0, 1.0),
        roi_size_vox=(16, 16, 16),
    )  # fmt: skip
    save_model(SegmentationModel(spec, build_network(config).state_dict()), ws / "models/dyn.pt")


def test_plan_fits_the_whole_volume_in_slabs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kneescope.inference.segmentation_model import load_model
    from kneescope.memory import StepConfig, predict_step

    ws = tmp_path / "ws"
    _tiny_model(ws)
    network = load_model(ws / "models/dyn.pt").spec.network
    # what the planner traces for the whole volume: bf16, cuda kernels, Adam (foreach), batch 1
    base = StepConfig(
        input_shape_vox=SHAPE, precision="bf16", device="cuda", foreach=True, optimizer="adam"
    )
    plain = min(
        predict_step(
            network, base.model_copy(update={"checkpointing": ck, "offload": off})
        ).required_bytes
        for ck in ("off", "selective", "per_block")
        for off in (False, True)
    )
    slab = predict_step(network, base.model_copy(update={"slab_vox": 8})).required_bytes
    assert slab < plain  # the full-resolution stage in slabs needs less
    budget = f"{(slab + plain) // 2}B"
    args = ["plan", "-m", "dyn", "-w", str(ws), "--shape", "x".join(map(str, SHAPE))]
    args += ["-b", budget, "--precision", "bf16"]

    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["full_volume"] is None

    assert main([*args, "--slabs", "8", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)["full_volume"]
    assert full["slab_vox"] == 8 and full["required_bytes"] == slab

    assert main([*args, "--slabs", "8"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Whole volume, batch 1: fits in slabs of 8 slices with bf16" in out


def test_bad_slabs_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--shape", "32x64x64", "-b", "11GB"]
    assert main([*args, "--network", "unet3d-nnunet", "--slabs", "7"]) == 2
    assert "even number of slices" in _one_line(capsys.readouterr().err)
    assert main([*args, "--network", "unet3d-small", "--slabs", "8"]) == 2
    assert "--slabs needs a DynUNet" in _one_line(capsys.readouterr().err)
    assert main([*args, "--network", "unet3d-nnunet", "--slabs", "8", "--mode", "infer"]) == 2
    assert "--mode train" in _one_line(capsys.readouterr().err)
