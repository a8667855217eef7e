"""`kneescope train` then `kneescope segment` end to end on tiny NIfTI phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kneescope.cli.app import main
from kneescope.core import Volume, affine_from_axes
from kneescope.io import write_nifti


def _pair(folder: Path, name: str, seed: int, side: str) -> tuple[Path, Volume]:
    rng = np.random.default_rng(seed)
    shape = (16, 24, 24)
    grid = np.indices(shape).astype(np.float32)
    c = np.array([8.0, 10.0, 12.0]) + rng.uniform(-1, 1, 3)
    r = np.sqrt(((grid - c[:, None, None, None]) ** 2).sum(0))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[r < 7] = 2
    labels[r < 5] = 1
    labels[2:-2, 19:23, 4:-4] = 3
    image = (np.array([20.0, 100.0, 250.0, 5.0])[labels] + rng.normal(0, 8, shape)).clip(0)
    direction = np.eye(3) if side == "right" else np.diag([-1.0, 1.0, 1.0])
    affine = affine_from_axes([0.0, 0.0, 0.0], direction, (1.0, 1.0, 1.0))
    img = Volume(image.astype(np.uint16), affine)
    write_nifti(img, folder / "images" / f"{name}.nii.gz")
    write_nifti(Volume(labels, affine), folder / "labels" / f"{name}.nii.gz")
    return folder / "images" / f"{name}.nii.gz", img


def test_train_then_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for n in range(4):
        _pair(data, f"k{n}", n, "right" if n % 2 else "left")
    (data / "sides.csv").write_text("name,side\nk0,L\nk1,right\nk2,left\nk3,R\n")
    config = tmp_path / "train.toml"
    config.write_text(
        'name = "tiny"\nmode = "3d"\ndata_dir = "data"\niterations = 12\n'
        "patch_size_vox = [16, 16, 16]\nbatch_size = 2\nval_fraction = 0.25\n"
        'precision = "fp32"\nvalidate_every = 12\nthreads = 1\naugment = false\n'
        '[network]\nname = "unet"\nspatial_dims = 3\nfeatures = [4, 8]\nstrides = [2]\n'
    )
    ws = tmp_path / "ws"
    assert main(["train", "-w", str(ws), "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    model = Path(report["model"])
    assert model == ws / "models" / "tiny.pt" and model.is_file()
    assert report["iterations_run"] == 12
    from kneescope.inference.segmentation_model import load_model

    spec = load_model(model).spec
    assert spec.side_canonical and spec.flip_axes == ()  # every side known: mirrored

    new = tmp_path / "new"
    (new / "images").mkdir(parents=True)
    (new / "labels").mkdir()
    path, image = _pair(new, "held", 99, "left")
    out = tmp_path / "out"
    argv = ["segment", str(path), "--model", "tiny", "-w", str(ws), "--out", str(out)]
    assert main(argv) != 0  # NIfTI records no side
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--side" in errors[0] and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
    assert main([*argv, "--side", "left", "--probabilities", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outputs"][0]["side"] == "left"
    seg = nib.load(result["outputs"][0]["labels"])
    assert seg.shape == image.shape
    np.testing.assert_allclose(seg.affine, image.affine_ras, atol=1e-5)
    assert np.asarray(seg.dataobj).dtype == np.uint8
    prob = nib.load(result["outputs"][0]["probabilities"])
    assert prob.shape == (*image.shape, 10)
    assert float(np.asarray(prob.dataobj[..., 0]).max()) <= 1.0 + 1e-6


def test_corrupt_model_is_one_clean_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    image = tmp_path / "img.nii.gz"
    write_nifti(Volume(np.zeros((4, 4, 4), dtype=np.uint16), np.eye(4)), image)
    code = main(["segment", str(image), "--model", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("error: ") and "corrupt" in err and err.count("\n") == 1
