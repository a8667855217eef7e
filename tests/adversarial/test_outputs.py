"""Adversarial names and files around what kneescope writes: a subject ``../evil``, ids that
sanitise alike, hostile sidecars, symlinks.

Every output must land inside the output folder, no two inputs may share an output, and a
file that is not kneescope's is never overwritten or trusted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.core.labels import KNEE_LABELS
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
from kneescope.io import read_volume, write_nifti
from kneescope.models import NetworkConfig, build_network


def _model(path: Path) -> Path:
    config = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=10, features=(4, 8), strides=(2,),
        num_res_units=0,
    )  # fmt: skip
    torch.manual_seed(0)
    spec = ModelSpec(
        network=config, mode="3d", labels=dict(KNEE_LABELS.labels), spacing_mm=(1.0, 1.0, 1.0),
        roi_size_vox=(8, 8, 8),
    )  # fmt: skip
    return save_model(SegmentationModel(spec, build_network(config).state_dict()), path)


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 300, (8, 8, 8)).astype(np.uint16)
    return write_nifti(Volume(array, np.eye(4)), path)


def _segment(*argv: str) -> int:
    return main(["segment", *argv, "--device", "cpu", "--precision", "fp32"])


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("../evil", "evil"),
        ("..", "x"),
        ("../../etc/passwd", "etc-passwd"),
        ("a/b", "a-b"),
        ("a\\b", "a-b"),
        (".hidden", "hidden"),
        ("x/../../y", "x-y"),
        ("", "x"),
        ("9009528", "9009528"),
        ("1.2.840.10008", "1.2.840.10008"),
        ("knee 01", "knee-01"),
    ],
)
def test_safe_token_never_leaves_a_folder(text: str, token: str) -> None:
    from kneescope.catalog.output_names import safe_token

    assert safe_token(text) == token
    assert "/" not in token and "\\" not in token and ".." not in token
    assert not token.startswith(".")


def test_manifest_subjects_cannot_escape_or_collide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = tmp_path / "cohort"
    subjects = ["../evil", "a/b", "a_b", "a b"]
    lines = ["path,subject,visit,side,sequence"]
    for n, subject in enumerate(subjects):
        _image(cohort / "images" / f"k{n}.nii.gz", n)
        lines.append(f'images/k{n}.nii.gz,"{subject}",V00,right,DESS')
    (cohort / "manifest.csv").write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    assert main(["ingest", str(cohort), "-w", str(ws)]) == 0
    model = _model(tmp_path / "m.pt")
    before = _files_under(tmp_path)
    out = tmp_path / "deep" / "out"

    assert _segment("--subject", "../evil", "-m", str(model), "-o", str(out), "-w", str(ws)) == 0
    capsys.readouterr()
    assert _segment(
        "--series", "2", "--series", "3", "--series", "4", "-m", str(model), "-o", str(out),
        "-w", str(ws), "--json",
    ) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["outputs"]
    new = _files_under(tmp_path) - before
    assert new and all(p.parent == out for p in new)  # nothing outside the output folder
    names = sorted(p.name for p in new if p.name.endswith("_seg.nii.gz"))
    assert len(names) == 4  # four series, four label maps: none replaced another
    assert "evil_V00_right_DESS_s1_seg.nii.gz" in names
    assert {Path(r["labels"]).name for r in rows} == {
        "a-b_V00_right_DESS_s2_seg.nii.gz",
        "a_b_V00_right_DESS_s3_seg.nii.gz",
        "a-b_V00_right_DESS_s4_seg.nii.gz",
    }


def test_inputs_whose_names_cannot_be_told_apart_are_refused_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _image(tmp_path / "x y" / "image.nii.gz", 1)
    second = _image(tmp_path / "x-y" / "image.nii.gz", 2)
    model = _model(tmp_path / "m.pt")
    out = tmp_path / "out"
    code = _segment(str(first), str(second), "-m", str(model), "-o", str(out))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "both write x-y_image_seg" in err
    assert not out.exists()


def test_a_symlinked_output_is_refused_and_its_target_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(tmp_path / "k.nii.gz")
    model = _model(tmp_path / "m.pt")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, out / "k_seg.ctbl")
    assert _segment(str(image), "-m", str(model), "-o", str(out)) == 2
    assert "k_seg.ctbl" in capsys.readouterr().err
    assert _segment(str(image), "-m", str(model), "-o", str(out), "--overwrite") == 0
    assert victim.read_text() == "precious\n"  # the link was replaced, not followed
    assert not (out / "k_seg.ctbl").is_symlink()


def test_hostile_sidecars_are_ignored_or_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(tmp_path / "k.nii.gz")
    sidecar = tmp_path / "k.json"
    os.mkfifo(sidecar)  # a FIFO must not hang the reader
    assert "side" not in read_volume(image).metadata
    sidecar.unlink()
    sidecar.write_text("{not json")
    assert "side" not in read_volume(image).metadata
    sidecar.write_text(json.dumps({"side": "left"}))  # not kneescope's: not trusted
    assert "side" not in read_volume(image).metadata
    sidecar.write_text(json.dumps({"written_by": "kneescope 1", "side": "up"}))
    model = _model(tmp_path / "m.pt")
    code = _segment(str(image), "-m", str(model), "-o", str(tmp_path / "out"))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "'up' is not right or left" in errors[0]


def test_export_never_overwrites_a_foreign_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = tmp_path / "cohort"
    _image(cohort / "images" / "k.nii.gz")
    (cohort / "manifest.csv").write_text("path,subject,visit,side\nimages/k.nii.gz,S1,V00,left\n")
    ws = tmp_path / "ws"
    assert main(["ingest", str(cohort), "-w", str(ws)]) == 0
    bids = tmp_path / "exp" / "knee.json"
    bids.parent.mkdir()
    bids.write_text('{"EchoTime": 0.005}')
    argv = ["export", "1", "-o", str(tmp_path / "exp" / "knee.nii.gz"), "-w", str(ws)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "knee.json exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert main([*argv, "--overwrite"]) == 2  # not even with --overwrite: it is not ours
    err = capsys.readouterr().err
    assert "not written by kneescope" in err and err.count("\n") == 1
    assert bids.read_text() == '{"EchoTime": 0.005}'
    assert not (tmp_path / "exp" / "knee.nii.gz").exists()


def test_a_foreign_json_or_a_file_as_output_folder_is_refused_even_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(tmp_path / "k.nii.gz")
    model = _model(tmp_path / "m.pt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "k_seg.json").write_text('{"EchoTime": 0.005}')
    assert _segment(str(image), "-m", str(model), "-o", str(out), "--overwrite") == 2
    err = capsys.readouterr().err
    assert "not written by kneescope" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["k_seg.json"]
    assert (out / "k_seg.json").read_text() == '{"EchoTime": 0.005}'

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert _segment(str(image), "-m", str(model), "-o", str(a_file)) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and err.count("\n") == 1 and "Traceback" not in err
