"""Every ``--json`` output parses with a strict JSON parser.

Python's ``json`` accepts ``NaN`` and ``Infinity``; no other parser does (JavaScript, jq,
PostgreSQL, Go, ...). ``train --json`` printed ``NaN`` for structures absent from the
validation case; any metric can be NaN. Here each command's JSON is parsed with
``parse_constant`` raising, on a tiny synthetic cohort and tiny NIfTI phantoms.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer.main

from kneescope.cli.app import app, main
from kneescope.core import Volume, affine_from_axes
from kneescope.io import write_nifti

# The commands whose --json this module checks (the last test checks it is all of them).
COVERED = {
    "synth", "ingest", "catalog", "export", "convert", "plan", "train", "segment", "measure",
    "run", "status", "demo", "results", "models", "xray", "score", "trial",
    "qc",  # strict JSON of qc import / qc list: tests/cli/test_qc_cli.py
    "report",  # strict JSON of report: tests/reports/test_report_cli.py
}  # fmt: skip


def _reject(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON (RFC 8259)")


def strict(text: str) -> Any:
    """``text`` parsed as strict JSON: NaN, Infinity and -Infinity are errors."""
    return json.loads(text, parse_constant=_reject)


def run_json(*argv: str, expect: int = 0) -> Any:
    """Run ``kneescope ARGV --json``; its stdout parsed strictly."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main([*argv, "--json"])
    assert code == expect, (argv, code)
    return strict(buffer.getvalue())


def test_strict_parser_rejects_nan() -> None:
    """The check below is real: Python's default parser would accept these."""
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        assert json.loads(text) is not None
        with pytest.raises(ValueError, match="is not JSON"):
            strict(text)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A one-subject synthetic cohort (2 knees, DESS + label maps), ingested."""
    root = tmp_path_factory.mktemp("json")
    out = {"root": root, "ws": str(root / "ws")}
    out["synth"] = run_json(
        "synth", "-o", str(root / "cohort"), "--size", "small", "--subjects", "1",
        "--visits", "V00", "--no-xray",
    )  # fmt: skip
    out["ingest"] = run_json("ingest", str(root / "cohort"), "-w", out["ws"])
    return out


def test_synth_ingest_catalog_convert_export(cohort: dict[str, Any]) -> None:
    ws, root = cohort["ws"], cohort["root"]
    assert cohort["synth"]["mri_series"] == 2
    assert cohort["ingest"]["added"] == 2
    series = run_json("catalog", "-w", ws)
    assert len(series) == 2
    assert run_json("catalog", "--summary", "-w", ws)["series"] == 2
    assert run_json("convert", "-w", ws)["converted"] == 2
    exported = run_json("export", str(series[0]["id"]), "-o", str(root / "x.nii.gz"), "-w", ws)
    assert Path(exported["path"]).is_file()
    # label maps of a small grid: extrusion cannot be measured there (NaN inside, null here)
    labelmaps = sorted(str(p) for p in (root / "cohort" / "labels").glob("*.nii.gz"))
    rows = run_json("measure", *labelmaps, "-w", ws)
    assert [row["labelmap"] for row in rows] == labelmaps


def test_run_dry_run_and_status(cohort: dict[str, Any]) -> None:
    ws, root = cohort["ws"], cohort["root"]
    config = root / "run.toml"
    config.write_text(
        'name = "js"\n[items.catalog]\nsequence = "DESS"\n'
        '[[steps]]\nname = "load_labels"\n[[steps]]\nname = "measure"\n'
        '[executor]\nkind = "local"\n'
    )
    plan = run_json("run", "-c", str(config), "--dry-run", "-w", ws)
    assert plan["plan"]["to_run"] == 2
    ran = run_json("run", "-c", str(config), "-w", ws)
    assert (ran["done"], ran["failed"]) == (2, 0)
    status = run_json("status", "-w", ws)
    assert status["counts"]["done"] == 2
    runs = run_json("results", "-w", ws)
    assert [(r["name"], r["items_done"]) for r in runs] == [("js", 2)]
    exported = run_json("results", "-w", ws, "-o", str(root / "js.csv"))
    assert exported["runs"] == ["js"] and exported["rows"] == exported["values"] > 0


def test_plan() -> None:
    payload = run_json("plan", "--network", "unet3d-small", "--shape", "32x32x32", "-b", "2GB")
    assert payload["candidates"]


def _pair(folder: Path, name: str, seed: int) -> Path:
    """A 16x24x24 right-knee phantom with 3 of the 9 knee structures (the others absent, so
    their Dice and surface distance are undefined: NaN inside, null in JSON)."""
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
    affine = affine_from_axes([0.0, 0.0, 0.0], np.eye(3), (1.0, 1.0, 1.0))
    write_nifti(Volume(labels, affine), folder / "labels" / f"{name}.nii.gz")
    return write_nifti(
        Volume(image.astype(np.uint16), affine), folder / "images" / f"{name}.nii.gz"
    )


def test_train_and_segment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    images = [_pair(data, f"k{n}", n) for n in range(3)]
    (data / "sides.csv").write_text("name,side\nk0,R\nk1,R\nk2,R\n")
    config = tmp_path / "train.toml"
    config.write_text(
        'name = "tiny"\nmode = "3d"\ndata_dir = "data"\niterations = 2\n'
        "patch_size_vox = [16, 16, 16]\nbatch_size = 1\nval_fraction = 0.34\n"
        'precision = "fp32"\nvalidate_every = 2\nthreads = 1\naugment = false\n'
        '[network]\nname = "unet"\nspatial_dims = 3\nfeatures = [4, 8]\nstrides = [2]\n'
    )
    ws = str(tmp_path / "ws")
    trained = run_json("train", "-c", str(config), "-w", ws)
    dice = trained["validation"]["dice"]
    # labels 1-3 are in the validation case; 4-9 are absent, their Dice undefined: null
    assert all(isinstance(d, float) for d in dice[:3])
    assert dice[3:] == [None] * 6
    assert trained["validation"]["surface_distance_mm"][3:] == [None] * 6

    seg = run_json(
        "segment", str(images[0]), "-m", "tiny", "--side", "right",
        "-o", str(tmp_path / "seg"), "-w", ws,
    )  # fmt: skip
    assert Path(seg["outputs"][0]["labels"]).is_file()


@pytest.mark.slow
def test_demo(tmp_path: Path) -> None:
    payload = run_json("demo", "--subjects", "1", "--visits", "V00", "-w", str(tmp_path))
    assert payload["stages"]


def test_models_json_is_strict(tmp_path: Path) -> None:
    """``models list/show --json`` (the shipped model's metrics may hold NaN)."""
    listed = run_json("models", "list", "-w", str(tmp_path))
    assert "knee-seg-2d" in [m["name"] for m in listed["models"]]
    shown = run_json("models", "show", "knee-seg", "-w", str(tmp_path))
    assert shown["name"] == "knee-seg-2d"


def test_xray_json_is_strict(tmp_path: Path) -> None:
    """A film with one knee: the missing knee's KL and JSW are null, never NaN; and crops."""
    from PIL import Image

    from kneescope.io import DicomWriteMeta
    from kneescope.io.dicom_radiograph import write_dicom_radiograph
    from kneescope.synth.knee_film_set import bad_input_film

    film = bad_input_film("one_knee", seed=3)
    meta = DicomWriteMeta(
        patient_id="9000001",
        study_date="20050301",
        study_description="OAI^XR",
        series_description="Bilateral PA Fixed Flexion Knee",
        modality="CR",
        uid_seed="json-strict",
    )
    path = write_dicom_radiograph(film.image, tmp_path / "film.dcm", meta=meta)
    payload = run_json("xray", "-i", str(path), "-w", str(tmp_path))
    knees = payload["knees"]
    assert len(knees) == 2 and sum(1 for k in knees if k["reason"]) == 1
    crop = tmp_path / "crop.png"
    pixels = np.random.default_rng(0).integers(0, 255, (224, 224), dtype=np.uint8)
    Image.fromarray(pixels).save(crop)
    crops = run_json("xray", "--cropped", "-i", str(crop), "-w", str(tmp_path))
    assert len(crops["crops"]) == 1


def test_score_json_is_strict(tmp_path: Path) -> None:
    """``score -m`` on knees with no reader grade: its agreement figures are null, not NaN."""
    import pandas as pd

    from kneescope.capabilities.oa_score.features import knee_features
    from kneescope.capabilities.oa_score.model_file import save_model
    from kneescope.capabilities.oa_score.score import ScoreOptions, fit_score

    rng = np.random.default_rng(0)
    d = rng.uniform(0, 4.9, 40)
    table = pd.DataFrame(
        {
            "subject": [f"S{i // 2}" for i in range(40)],
            "visit": "V00",
            "side": ["right", "left"] * 20,
            "mjsw_medial_mm": 5 - 0.8 * d + rng.normal(0, 0.3, 40),
        }
    )
    result = fit_score(knee_features([table]), np.floor(d), ScoreOptions(), {})
    model = save_model(result.model, tmp_path / "oa_score_model.json", "card")
    (tmp_path / "runs" / "r").mkdir(parents=True)
    table.to_parquet(tmp_path / "runs" / "r" / "results.parquet")
    payload = run_json("score", "--run", "r", "-m", str(model), "--no-store", "-w", str(tmp_path))
    assert payload["knees"] == 40 and payload["spearman_reader_kl"] is None


def test_trial_json_is_strict(tmp_path: Path) -> None:
    """``trial --json`` with an endpoint measured at baseline only (no model: its difference,
    power and responder rates are null, never NaN)."""
    import pandas as pd

    rng = np.random.default_rng(17009)
    rows = [
        {"subject": f"S{s}", "side": "right", "visit": visit, "arm": "ab"[s % 2],
         "a_mm": 2.0 - 0.05 * m / 12 + rng.normal(0, 0.1),
         "b_mm": rng.normal(1.0, 0.1) if visit == "V00" else None}
        for s in range(30) for visit, m in (("V00", 0), ("V01", 12), ("V03", 24))
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "trial.toml").write_text(
        '[data]\ntable = "t.csv"\n[arms]\nvariable = "arm"\ncontrol = "a"\ntreatment = "b"\n'
        '[analysis]\nendpoints = ["a_mm", "b_mm"]\nknee = "right"\n'
        '[[responders]]\nendpoint = "b_mm"\nthreshold = 0\n'
    )
    payload = run_json("trial", "-c", str(tmp_path / "trial.toml"), "-w", str(tmp_path))
    assert payload["endpoints"][0]["primary"]["visit"] == "V03"
    assert payload["endpoints"][1]["primary"] is None and payload["endpoints"][1]["error"]
    assert payload["responders"][0]["rate_control"] is None


def test_every_json_command_is_covered() -> None:
    group: Any = typer.main.get_command(app)
    with_json = {
        name for name, cmd in group.commands.items() if any("--json" in p.opts for p in cmd.params)
    }
    assert with_json == COVERED, sys.modules[__name__].__doc__
