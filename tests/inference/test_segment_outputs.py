"""What `kneescope segment` writes: one distinct set of files per
input, never a silent overwrite, the same name from a file or a catalog selection, colour
tables that name every label, and the knee's side recorded and read back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from kneescope.cli.app import main
from kneescope.core import Volume, affine_from_axes
from kneescope.core.labels import KNEE_LABELS
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
from kneescope.io import read_volume, write_nifti
from kneescope.models import NetworkConfig, build_network

SCHEME = {0: "background", **KNEE_LABELS.labels}


def read_slicer_colour_table(path: Path) -> dict[int, tuple[str, tuple[int, int, int, int]]]:
    from kneescope.io.colour_table import read_slicer_colour_table as read

    return read(path)


def read_itksnap_label_description(path: Path) -> dict[int, tuple[str, tuple[int, int, int, int]]]:
    from kneescope.io.colour_table import read_itksnap_label_description as read

    return read(path)


def save_tiny_model(path: Path, *, side_canonical: bool = False) -> Path:
    """A random-weight MONAI UNet (features 4, 8) with kneescope's 9 labels, as a model file."""
    config = NetworkConfig(
        name="unet",
        spatial_dims=3,
        out_channels=len(SCHEME),
        features=(4, 8),
        strides=(2,),
        num_res_units=0,
    )
    torch.manual_seed(0)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels=dict(KNEE_LABELS.labels),
        spacing_mm=(1.0, 1.0, 1.0),
        roi_size_vox=(8, 8, 8),
        side_canonical=side_canonical,
    )
    return save_model(SegmentationModel(spec, build_network(config).state_dict()), path)


def knee_image(shape: tuple[int, int, int], seed: int, side: str = "right") -> Volume:
    rng = np.random.default_rng(seed)
    direction = np.eye(3) if side == "right" else np.diag([-1.0, 1.0, 1.0])
    affine = affine_from_axes([0.0, 0.0, 0.0], direction, (1.0, 1.0, 1.0))
    return Volume(rng.integers(0, 400, size=shape).astype(np.uint16), affine)


def write_image(volume: Volume, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_nifti(volume, path)


def _digest(folder: Path) -> dict[str, tuple[str, int]]:
    """File name -> (sha256, inode) of everything in ``folder``."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino)
        for p in sorted(folder.iterdir())
    }


def _segment(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["segment", *argv, "--device", "cpu", "--precision", "fp32"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_tiny_model(tmp_path / "tiny.pt")


def test_same_stem_inputs_get_distinct_outputs_and_no_silent_overwrite(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a" / "image.nii.gz", tmp_path / "b" / "image.nii.gz"
    write_image(knee_image((12, 14, 10), 1), a)
    write_image(knee_image((10, 12, 16), 2), b)
    out = tmp_path / "sx"
    argv = [str(a), str(b), "-m", str(model), "-o", str(out), "-w", str(tmp_path / "ws")]
    code, stdout, _ = _segment(capsys, *argv, "--json")
    assert code == 0
    rows = json.loads(stdout)["outputs"]
    labels = [Path(r["labels"]) for r in rows]
    assert [p.name for p in labels] == ["a_image_seg.nii.gz", "b_image_seg.nii.gz"]
    # each label map lies on its own input's grid: neither replaced the other
    assert nib.load(labels[0]).shape == (12, 14, 10)
    assert nib.load(labels[1]).shape == (10, 12, 16)
    assert len(list(out.iterdir())) == 2 * 4  # label map, sidecar, two colour tables each

    before = _digest(out)
    # the same call again (a rerun after Ctrl-C): finished inputs are skipped, not rewritten
    code, stdout, _ = _segment(capsys, *argv, "--json")
    assert code == 0
    assert [r.get("skipped") for r in json.loads(stdout)["outputs"]] == [True, True]
    assert _digest(out) == before  # byte-identical, not even rewritten
    # another result (other options) into the same names: refused before any work
    code, _, err = _segment(capsys, *argv, "--blend", "constant")
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert "a_image_seg" in err
    assert _digest(out) == before  # byte-identical, not even rewritten

    code, _, _ = _segment(capsys, *argv, "--overwrite", "--blend", "constant")
    assert code == 0
    after = _digest(out)
    assert after.keys() == before.keys()
    assert all(after[name][1] != before[name][1] for name in before)  # every file replaced


def test_one_existing_output_stops_the_whole_call_before_any_work(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "k1.nii.gz", tmp_path / "k2.nii.gz"
    write_image(knee_image((8, 8, 8), 1), first)
    write_image(knee_image((8, 8, 8), 2), second)
    out = tmp_path / "out"
    out.mkdir()
    (out / "k2_seg.ctbl").write_text("mine\n")  # someone's file with an output's name
    code, _, err = _segment(capsys, str(first), str(second), "-m", str(model), "-o", str(out))
    assert code == 2 and "k2_seg.ctbl" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["k2_seg.ctbl"]  # k1 not segmented
    assert (out / "k2_seg.ctbl").read_text() == "mine\n"


def test_colour_tables_and_sidecar_of_segment_outputs(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "knee.nii.gz"
    write_image(knee_image((8, 10, 12), 3), image)
    out = tmp_path / "out"
    code, _, _ = _segment(capsys, str(image), "-m", str(model), "-o", str(out), "--side", "left")
    assert code == 0
    slicer = read_slicer_colour_table(out / "knee_seg.ctbl")
    assert {v: name for v, (name, _) in slicer.items()} == SCHEME
    colours = [rgba for v, (_, rgba) in slicer.items() if v]
    assert len(set(colours)) == len(colours) and all(c[3] == 255 for c in colours)
    itksnap = read_itksnap_label_description(out / "knee_seg.itksnap.txt")
    assert {v: name for v, (name, _) in itksnap.items() if v} == KNEE_LABELS.labels
    assert {v: rgba for v, (_, rgba) in itksnap.items() if v} == {
        v: rgba for v, (_, rgba) in slicer.items() if v
    }
    sidecar = json.loads((out / "knee_seg.json").read_text())
    assert sidecar["side"] == "left" and sidecar["kind"] == "labels"
    assert sidecar["labels"] == {str(v): n for v, n in KNEE_LABELS.labels.items()}
    seg = read_volume(out / "knee_seg.nii.gz")
    assert seg.metadata["side"] == "left"  # header and sidecar both read back
    assert (
        nib.load(out / "knee_seg.nii.gz")
        .header["descrip"]
        .tobytes()
        .startswith(b"kneescope side=left")
    )


def test_side_recorded_by_kneescope_is_read_back_and_conflicts_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_tiny_model(tmp_path / "canonical.pt", side_canonical=True)
    image = tmp_path / "knee.nii.gz"
    write_image(knee_image((8, 10, 12), 4, side="left"), image)
    out = tmp_path / "out"
    argv = [str(image), "-m", str(model), "-o", str(out)]
    code, _, err = _segment(capsys, *argv)
    assert code == 2 and "--side" in err  # a plain NIfTI records no side

    # what kneescope writes carries the side: its own label map segments without --side
    code, _, _ = _segment(capsys, *argv, "--side", "left")
    assert code == 0
    again = tmp_path / "again"
    code, stdout, _ = _segment(
        capsys, str(out / "knee_seg.nii.gz"), "-m", str(model), "-o", str(again), "--json"
    )
    assert code == 0 and json.loads(stdout)["outputs"][0]["side"] == "left"

    code, _, err = _segment(
        capsys, str(out / "knee_seg.nii.gz"), "-m", str(model), "-o", str(tmp_path / "x"),
        "--side", "right",
    )  # fmt: skip
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert "--side says side right" in errors[0] and "header says left" in errors[0]
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def _manifest_workspace(tmp_path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A workspace whose catalog holds one NIfTI knee per (file, subject, visit, side) row,
    each with a label map, ingested through a manifest."""
    cohort = tmp_path / "cohort"
    lines = ["path,subject,visit,side,sequence,label_path"]
    for n, (name, subject, visit, side) in enumerate(rows):
        image = knee_image((8, 10, 12), 10 + n, side)
        write_image(image, cohort / "images" / f"{name}.nii.gz")
        labels = image.with_array((image.array % 10).astype(np.uint8))
        write_image(labels, cohort / "labels" / f"{name}.nii.gz")
        lines.append(f"images/{name}.nii.gz,{subject},{visit},{side},DESS,labels/{name}.nii.gz")
    (cohort / "manifest.csv").write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    assert main(["ingest", str(cohort), "-w", str(ws)]) == 0
    return ws


def test_file_and_catalog_selection_give_the_same_name(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _manifest_workspace(tmp_path, [("95240483", "9009528", "V00", "left")])
    capsys.readouterr()
    image = tmp_path / "cohort" / "images" / "95240483.nii.gz"
    by_file, by_subject = tmp_path / "f", tmp_path / "s"
    code, out1, _ = _segment(capsys, str(image), "-m", str(model), "-o", str(by_file), "-w",
                             str(ws), "--json")  # fmt: skip
    assert code == 0
    code, _, _ = _segment(capsys, "--subject", "9009528", "-m", str(model), "-o",
                             str(by_subject), "-w", str(ws), "--json")  # fmt: skip
    assert code == 0
    names1 = sorted(p.name for p in by_file.iterdir())
    names2 = sorted(p.name for p in by_subject.iterdir())
    assert names1 == names2
    assert "9009528_V00_left_DESS_s1_seg.nii.gz" in names1
    row = json.loads(out1)["outputs"][0]
    assert row["side"] == "left"  # the catalog's side
    sidecar = json.loads(Path(row["sidecar"]).read_text())
    assert (sidecar["subject"], sidecar["visit"], sidecar["series_id"]) == ("9009528", "V00", 1)
    # a file given and selected again is segmented once
    code, out3, _ = _segment(capsys, str(image), "--subject", "9009528", "-m", str(model),
                             "-o", str(tmp_path / "both"), "-w", str(ws), "--json")  # fmt: skip
    assert code == 0 and len(json.loads(out3)["outputs"]) == 1


def test_exported_knee_segments_without_side_and_export_labels_has_colours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _manifest_workspace(tmp_path, [("k", "9000001", "V01", "left")])
    model = save_tiny_model(tmp_path / "canonical.pt", side_canonical=True)
    exported = tmp_path / "exp" / "knee.nii.gz"
    exported.parent.mkdir()
    assert main(["export", "1", "-o", str(exported), "-w", str(ws)]) == 0
    capsys.readouterr()
    assert read_volume(exported).metadata["side"] == "left"
    assert json.loads((tmp_path / "exp" / "knee.json").read_text())["series_id"] == 1
    code, stdout, err = _segment(
        capsys, str(exported), "-m", str(model), "-o", str(tmp_path / "out"), "--json"
    )
    assert code == 0, err
    row = json.loads(stdout)["outputs"][0]
    assert row["side"] == "left"
    assert json.loads(Path(row["sidecar"]).read_text())["subject"] == "9000001"
    nrrd = tmp_path / "exp" / "knee2.nrrd"  # NRRD has no descrip: the sidecar alone
    assert main(["export", "1", "--format", "nrrd", "-o", str(nrrd), "-w", str(ws)]) == 0
    capsys.readouterr()
    code, stdout, err = _segment(
        capsys, str(nrrd), "-m", str(model), "-o", str(tmp_path / "out2"), "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["outputs"][0]["side"] == "left"

    labels = tmp_path / "exp" / "labels.nii.gz"
    assert main(["export", "1", "--labels", "-o", str(labels), "-w", str(ws)]) == 0
    slicer = read_slicer_colour_table(tmp_path / "exp" / "labels.ctbl")
    assert {v: name for v, (name, _) in slicer.items()} == SCHEME
    itksnap = read_itksnap_label_description(tmp_path / "exp" / "labels.itksnap.txt")
    assert {v: name for v, (name, _) in itksnap.items() if v} == KNEE_LABELS.labels
    assert read_volume(labels).metadata["side"] == "left"


def test_run_segment_step_writes_colour_tables_and_side(tmp_path: Path, model: Path) -> None:
    import pandas as pd

    from kneescope.cohort.pipeline_config import PipelineConfig
    from kneescope.cohort.runner import run_pipeline
    from kneescope.workspace import Workspace

    write_image(knee_image((8, 10, 12), 5), tmp_path / "data" / "k.nii.gz")
    (tmp_path / "items.csv").write_text("item_id,side,path\nknee-1,left,data/k.nii.gz\n")
    config = PipelineConfig.model_validate(
        {
            "name": "seg",
            "items": {"list": "items.csv"},
            "steps": [
                {"name": "load_volume"},
                {"name": "segment", "options": {"model": str(model), "device": "cpu"}},
            ],
        }
    )
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"), base_dir=tmp_path)
    assert (result.done, result.failed) == (1, 0)
    labels = Path(pd.read_parquet(result.results_path)["file_segment_labels"].iloc[0])
    slicer = read_slicer_colour_table(labels.with_name("labels.ctbl"))
    assert {v: name for v, (name, _) in slicer.items()} == SCHEME
    itksnap = read_itksnap_label_description(labels.with_name("labels.itksnap.txt"))
    assert {v: name for v, (name, _) in itksnap.items() if v} == KNEE_LABELS.labels
    assert read_volume(labels).metadata["side"] == "left"
    assert json.loads(labels.with_name("labels.json").read_text())["item_id"] == "knee-1"
