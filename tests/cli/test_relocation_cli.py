"""A workspace copied with its data (``cp -a A B; rm -r A``) works through the CLI: the
ingest adds nothing, and catalog, export and segment read B's files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
from kneescope.io import write_nifti
from kneescope.models import NetworkConfig, build_network


def _tiny_model(path: Path) -> Path:
    """An untrained 3D U-Net model file: enough to run ``segment`` end to end."""
    config = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=3, features=(4, 8), strides=(2,),
        num_res_units=0,
    )  # fmt: skip
    torch.manual_seed(0)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={1: "femur", 2: "femoral_cartilage"},
        spacing_mm=(1.0, 1.0, 1.0),
        orientation="RAS",
        roi_size_vox=(8, 8, 8),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model(
        SegmentationModel(spec=spec, state_dict=build_network(config).state_dict()), path
    )


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_copied_workspace_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "A"
    (a / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    lines = ["path,subject,visit,side,sequence"]
    for i, side in enumerate(("right", "left")):
        array = rng.integers(0, 400, size=(12, 16, 10)).astype(np.int16)
        arrays[f"S{i}"] = array
        write_nifti(Volume(array, np.eye(4)), a / "data" / f"knee{i}.nii.gz")
        lines.append(f"knee{i}.nii.gz,S{i},V00,{side},DESS")
    (a / "data" / "manifest.csv").write_text("\n".join(lines) + "\n")
    _tiny_model(a / "models" / "tiny.pt")
    first = _json(capsys, ["ingest", str(a / "data"), "-w", str(a)])
    assert first["added"] == 2
    ids = {r["subject"]: r["id"] for r in _json(capsys, ["catalog", "-w", str(a)])}

    shutil.copytree(a, tmp_path / "B")
    shutil.rmtree(a)
    b = tmp_path / "B"

    again = _json(capsys, ["ingest", str(b / "data"), "-w", str(b)])
    assert (again["added"], again["unchanged"]) == (0, 2)
    listed = _json(capsys, ["catalog", "-w", str(b)])
    assert {r["subject"]: r["id"] for r in listed} == ids
    assert all(Path(r["path"]).parent == b / "data" for r in listed)

    out = tmp_path / "s1.nii.gz"
    _json(capsys, ["export", str(ids["S1"]), "--format", "nifti", "--out", str(out), "-w", str(b)])
    assert np.array_equal(np.asarray(nib.load(out).dataobj), arrays["S1"])

    result = _json(
        capsys,
        [
            "segment",
            "--subject",
            "S0",
            "--model",
            "tiny",
            "-w",
            str(b),
            "--out",
            str(tmp_path / "seg"),
        ],
    )
    (output,) = result["outputs"]
    assert nib.load(output["labels"]).shape == arrays["S0"].shape
