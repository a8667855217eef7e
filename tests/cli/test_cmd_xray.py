"""``kneescope xray`` end to end on DICOM knee films (MONOCHROME1 with only Imager Pixel
Spacing, MONOCHROME2 with Pixel Spacing) with a tiny KL model: per knee side, centre, KL
probabilities, JSN/mJSW and the JSW profile; the CSV; --cropped on PNG/JPEG/DICOM crops;
exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kneescope.capabilities.classification.config import ClassificationConfig
from kneescope.capabilities.classification.kl import grade_crops, grade_knees, load_kl_model
from kneescope.capabilities.classification.synthetic import synthetic_classification
from kneescope.capabilities.classification.task import ClassificationTaskFactory
from kneescope.cli.app import main
from kneescope.io import read_dicom_radiograph, write_dicom_radiograph
from kneescope.io.dicom_write import DicomWriteMeta
from kneescope.synth.knee_film_set import KneeFilm, knee_film
from kneescope.training.engine import fit
from kneescope.training.engine_config import EngineConfig
from kneescope.workspace import Workspace
from kneescope.xray.locate import locate_knees

META = DicomWriteMeta(
    patient_id="9000011",
    study_date="20050301",
    study_description="OAI^XR^ENROLLMENT",
    series_description="Bilateral PA Fixed Flexion Knee",
    modality="CR",
    uid_seed="xray-cli",
)


@pytest.fixture(scope="module")
def kl_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 5-grade classifier (a few iterations on bar images; its grades mean nothing,
    but they are what the model says)."""
    root = tmp_path_factory.mktemp("kl")
    for split, n, seed in (("train", 20, 2), ("val", 10, 3)):
        data = synthetic_classification(n, n_classes=5, size_vox=(32, 32), seed=seed)
        for idx, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
            folder = root / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip((image + 1.0) * 100.0, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{9000000 + idx}R.png")
    config = ClassificationConfig.model_validate(
        {
            "classes": ["0", "1", "2", "3", "4"],
            "input_size_vox": [32, 32],
            "crop_mm": 90.0,
            "network": {
                "name": "resnet",
                "spatial_dims": 2,
                "out_channels": 5,
                "features": [4, 8, 8, 8],
                "layers": [1, 1, 1, 1],
                "norm": "batch",
                "act": "relu",
            },
            "data": {"source": "folder", "train": "train", "validation": "val"},
        }
    )
    task = ClassificationTaskFactory().build(
        config, workspace=Workspace(root / "ws"), seed=0, base_dir=root
    )
    engine = EngineConfig(iterations=2, batch_size=8, validate_every=2, threads=1)
    fit(task, engine, run_dir=root / "run", model_path=root / "kl.pt")
    return root / "kl.pt"


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, KneeFilm]]:
    folder = tmp_path_factory.mktemp("films")
    a = knee_film(seed=21, index=0, implant_rate=0.0)
    b = knee_film(seed=21, index=1, implant_rate=0.0)
    path_a = write_dicom_radiograph(
        a.image,
        folder / "a.dcm",
        meta=META,
        photometric="MONOCHROME1",
        pixel_spacing=False,
        image_laterality="B",
    )
    series = folder / "series_b"
    series.mkdir()
    path_b = write_dicom_radiograph(b.image, series / "001", meta=META, image_laterality="B")
    return {"a": (path_a, a), "b": (path_b, b)}


def test_knee_films_end_to_end(
    films: dict[str, tuple[Path, KneeFilm]],
    kl_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    path_a, film_a = films["a"]
    path_b, film_b = films["b"]
    args = ["xray", "-i", str(path_a), "-i", str(path_b.parent), "-o", str(out)]
    code = main([*args, "-m", str(kl_model), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    knees = json.loads(captured.out)["knees"]
    assert len(knees) == 4
    truths = {(str(path_a), t.side): t for t in film_a.knees}
    truths.update({(str(path_b), t.side): t for t in film_b.knees})
    for knee in knees:
        truth = truths[(knee["film"], knee["knee_side"])]
        assert knee["gradable"] and knee["reason"] == ""
        d = np.subtract((knee["knee_centre_row_px"], knee["knee_centre_col_px"]), truth.centre_rc)
        assert float(np.hypot(*d)) * truth.pixel_mm <= 2.0
        source = "ImagerPixelSpacing" if knee["film"] == str(path_a) else "PixelSpacing"
        assert knee["spacing_source"] == source
        probs = np.asarray(knee["kl_probabilities"])
        assert probs.shape == (5,) and probs.sum() == pytest.approx(1.0, abs=1e-3)
        assert knee["kl_grade"] == int(probs.argmax())
        assert knee["mjsw_medial_mm"] is not None and knee["jsn_medial"] in (0, 1, 2, 3)
        profile = knee["jsw_profile"]
        assert len(profile["roi_col"]) == len(profile["jsw_mm"]) > 10
    # the probabilities are the model's on the located ROIs (the other knee as its pair)
    located = locate_knees(read_dicom_radiograph(path_a))
    rois = np.stack([located.right.roi, located.left.roi])  # type: ignore[list-item]
    direct = grade_knees(load_kl_model(kl_model), rois, rois[::-1]).probabilities
    cli = [k for k in knees if k["film"] == str(path_a)]
    cli_probs = [
        next(k for k in cli if k["knee_side"] == s)["kl_probabilities"] for s in ("right", "left")
    ]
    np.testing.assert_allclose(np.asarray(cli_probs), direct, atol=2e-4)
    # the table: one row per knee, every column
    with (out / "xray_knees.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert {"film", "knee_side", "kl_grade", "kl_p4", "mjsw_lateral_mm", "reason"} <= set(rows[0])
    assert {r["spacing_source"] for r in rows} == {"ImagerPixelSpacing", "PixelSpacing"}
    # an existing table is never replaced unasked
    before = (out / "xray_knees.csv").read_bytes()
    assert main([*args, "-m", str(kl_model)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "xray_knees.csv").read_bytes() == before


def test_unreadable_input_among_films_exits_1_and_keeps_the_others(
    films: dict[str, tuple[Path, KneeFilm]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 300)
    path_a, _ = films["a"]
    code = main(["xray", "-i", str(path_a), "-i", str(junk), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    payload = json.loads(captured.out)
    assert len(payload["knees"]) == 2
    assert all(k["kl_grade"] is None for k in payload["knees"]) or all(
        k["kl_model"] for k in payload["knees"]
    )
    assert [u["input"] for u in payload["unreadable"]] == [str(junk)]
    (line,) = [x for x in captured.err.splitlines() if x.startswith("error:")]
    assert "junk.dcm" in line


def test_cropped_images_get_kl_probabilities(
    films: dict[str, tuple[Path, KneeFilm]],
    kl_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path_a, _ = films["a"]
    roi = locate_knees(read_dicom_radiograph(path_a)).right.roi
    assert roi is not None
    crop = roi[125:575, 125:575]
    pixels = np.clip((crop - crop.min()) / (np.ptp(crop) + 1e-6) * 255, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "k.png")
    Image.fromarray(pixels).save(tmp_path / "k.jpg", quality=95)
    from kneescope.core import Volume

    affine = np.array([[0, -0.2, 0, 0], [0, 0, 1.0, 0], [-0.2, 0, 0, 0], [0, 0, 0, 1.0]])
    dcm = write_dicom_radiograph(
        Volume(pixels.astype(np.uint16), affine), tmp_path / "k.dcm", meta=META
    )
    out = tmp_path / "crops"
    images = [tmp_path / "k.png", tmp_path / "k.jpg", dcm]
    code = main(
        [
            "xray",
            "--cropped",
            *[x for p in images for x in ("-i", str(p))],
            "-m",
            str(kl_model),
            "-o",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    crops = json.loads(captured.out)["crops"]
    assert [Path(c["image"]).name for c in crops] == ["k.png", "k.jpg", "k.dcm"]
    model = load_kl_model(kl_model)
    arrays = [
        np.asarray(Image.open(tmp_path / "k.png")),
        np.asarray(Image.open(tmp_path / "k.jpg")),
    ]
    arrays.append(read_dicom_radiograph(dcm).array)
    direct = grade_crops(model, arrays).probabilities
    got = np.array([[c[f"kl_p{g}"] for g in range(5)] for c in crops])
    np.testing.assert_allclose(got, direct, atol=2e-4)
    assert [c["kl_grade"] for c in crops] == direct.argmax(axis=1).tolist()
    assert (out / "xray_crops.csv").is_file()
