"""`kneescope plan`: budgets need a unit, an empty plan fails with the reason, and --model
names a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kneescope.cli.app import main


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("error: "), err
    return err


def test_budget_without_unit_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--network", "unet3d-small", "-i", "64x64x64", "-b", "11"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "has no unit" in _one_line(err) and "11GB" in err and "11GiB" in err


def test_nothing_fits_exits_1_with_the_smallest_need(capsys: pytest.CaptureFixture[str]) -> None:
    # the safety margin alone (0.54 GB) exceeds 100 MB: no configuration can fit
    code = main(["plan", "--network", "unet3d-small", "--shape", "64x64x64", "-b", "100MB"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""  # no empty table, no "train on the patches above"
    line = _one_line(err)
    assert "nothing fits 0.10 GB" in line
    need_gb = float(line.split(" needs ")[1].split(" GB")[0])
    assert need_gb > 0.54  # above the margin, i.e. more than the budget


def test_network_and_old_model_spelling_plan_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["-i", "64x64x64", "-b", "2GB", "--json"]
    assert main(["plan", "--network", "unet3d-small", *args]) == 0
    new, new_err = capsys.readouterr()
    assert new_err == ""
    # --model with a preset name (the old spelling) still works, with a note on stderr
    assert main(["plan", "--model", "unet3d-small", *args]) == 0
    old, old_err = capsys.readouterr()
    assert "note:" in old_err and "--network unet3d-small" in old_err
    a, b = json.loads(new), json.loads(old)
    assert a["candidates"] and a["network"] == b["network"]
    assert [c["patch_size"] for c in a["candidates"]] == [c["patch_size"] for c in b["candidates"]]


def test_model_is_a_trained_model_file_or_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from kneescope.core.labels import KNEE_LABELS
    from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
    from kneescope.models import NetworkConfig, build_network, model_fingerprint

    config = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=10, features=(4, 8), strides=(2,),
        num_res_units=0,
    )  # fmt: skip
    torch.manual_seed(0)
    spec = ModelSpec(
        network=config, mode="3d", labels=dict(KNEE_LABELS.labels), spacing_mm=(0.7, 0.4, 0.4),
        roi_size_vox=(8, 8, 8),
    )  # fmt: skip
    ws = tmp_path / "ws"
    save_model(SegmentationModel(spec, build_network(config).state_dict()), ws / "models/tiny.pt")
    args = ["--shape", "32x32x32", "-b", "2GB", "--json", "-w", str(ws)]
    assert main(["plan", "-m", "tiny", *args]) == 0  # a name in WORKSPACE/models/
    by_name = json.loads(capsys.readouterr().out)
    assert by_name["network"] == model_fingerprint(config)
    assert by_name["spacing_mm"] == [0.7, 0.4, 0.4]  # the model's spacing by default
    assert main(["plan", "--model", str(ws / "models/tiny.pt"), *args]) == 0
    assert json.loads(capsys.readouterr().out)["network"] == by_name["network"]

    assert main(["plan", "-m", "nope", *args]) == 3
    line = _one_line(capsys.readouterr().err)
    assert "no trained model 'nope'" in line and "--network" in line
    assert main(["plan", "-m", "tiny", "--network", "unet3d-small", *args]) == 2
    assert "not both" in _one_line(capsys.readouterr().err)
