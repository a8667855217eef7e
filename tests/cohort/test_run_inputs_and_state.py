"""What a run reads and what ``status`` says about it.

- ``load_labels`` on catalog items reads the label map attached in the catalog (never the
  series' MR image) and fails an item that has none;
- a model name in a run config resolves as ``kneescope segment --model`` does, and relative
  paths in a config resolve against the config file's folder (not the current folder);
- ``status`` after a re-run with nothing to do reports the run that did the work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_helpers import write_cohort
from test_knee_steps import _images, _tiny_model_file

from kneescope.biomarkers import measure_knee
from kneescope.biomarkers.knee_phantom import render_compact_toy_knee
from kneescope.catalog.database import Catalog
from kneescope.catalog.manifest import import_manifest
from kneescope.cli.app import main
from kneescope.cohort.manifest import Manifest
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.core import Volume
from kneescope.io import read_volume, write_nifti
from kneescope.workspace import Workspace


def test_load_labels_on_catalog_items_reads_the_attached_label_map(tmp_path: Path) -> None:
    toy = render_compact_toy_knee()
    labels = toy.labels
    mr = Volume((labels.array.astype(np.int16) * 40 + 200).astype(np.int16), labels.affine_ras)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write_nifti(mr, cohort / "s0.nii.gz")
    write_nifti(mr, cohort / "s1.nii.gz")
    label_file = write_nifti(labels, cohort / "s0_labels.nii.gz")
    (cohort / "manifest.csv").write_text(
        "path,subject,visit,side,sequence,label_path\n"
        "s0.nii.gz,S0,V00,right,DESS,s0_labels.nii.gz\n"
        "s1.nii.gz,S1,V00,right,DESS,\n"
    )
    ws = Workspace.resolve(tmp_path / "ws").ensure()
    with Catalog.for_workspace(ws, create=True) as catalog:
        import_manifest(catalog, cohort / "manifest.csv")
    config = PipelineConfig.model_validate(
        {
            "name": "cat-labels",
            "items": {"catalog": {"sequence": "DESS"}},
            "steps": [{"name": "load_labels"}, {"name": "measure"}],
        }
    )
    result = run_pipeline(config, ws)
    assert (result.done, result.failed) == (1, 1)
    row = pd.read_parquet(result.results_path).set_index("subject").loc["S0"]
    assert Path(row["labels_path"]).resolve() == label_file.resolve()
    truth = measure_knee(read_volume(label_file), "right", with_maps=False).values
    compared = 0
    for key, value in truth.items():
        if np.isfinite(value):
            assert row[key] == pytest.approx(value, rel=1e-9), key
            compared += 1
    assert compared > 10
    with Manifest(result.run_dir / "manifest.sqlite", readonly=True) as manifest:
        (failed,) = list(manifest.rows(("failed",)))
    assert failed["subject"] == "S1"
    assert "no label map in the catalog" in failed["reason"]


def _segment_config(folder: Path, model: str) -> Path:
    path = folder / "run.toml"
    path.write_text(
        'name = "seg"\n[items]\nglob = "images/*.nii.gz"\n'
        '[[steps]]\nname = "load_volume"\n'
        f'[[steps]]\nname = "segment"\noptions = {{ model = "{model}", write_labels = false }}\n'
    )
    return path


def _dry_run_model_hash(
    capsys: pytest.CaptureFixture[str], ws: Path, folder: Path, model: str
) -> str:
    code = main(
        ["run", "-w", str(ws), "-c", str(_segment_config(folder, model)), "--dry-run", "--json"]
    )
    assert code == 0, capsys.readouterr().err
    return str(json.loads(capsys.readouterr().out)["plan"]["model_hash"])


def test_a_model_name_in_a_run_config_resolves_like_segment_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    folder = tmp_path / "project"
    _images(folder / "images", 1)
    in_ws = _tiny_model_file(ws / "models" / "knee.pt", seed=0)
    beside = _tiny_model_file(folder / "weights" / "other.pt", seed=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must not depend on the current folder

    by_path = _dry_run_model_hash(capsys, ws, folder, str(in_ws))
    assert by_path
    assert _dry_run_model_hash(capsys, ws, folder, "knee") == by_path
    assert _dry_run_model_hash(capsys, ws, folder, "knee.pt") == by_path
    other = _dry_run_model_hash(capsys, ws, folder, "weights/other.pt")
    assert other == _dry_run_model_hash(capsys, ws, folder, str(beside)) and other != by_path

    config = _segment_config(folder, "nope")
    assert main(["run", "-w", str(ws), "-c", str(config), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model nope not found") and str(ws / "models") in err

    # The real run: workers get the resolved model.
    assert main(["run", "-w", str(ws), "-c", str(_segment_config(folder, "knee")), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["done"], out["model_hash"]) == (1, by_path)


def test_relative_paths_in_a_config_resolve_against_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    write_cohort(folder / "data", 2)
    (folder / "traces").mkdir()
    config = folder / "run.toml"
    config.write_text(
        'name = "rel"\n[items]\nlist = "data/items.csv"\n'
        '[[steps]]\nname = "sleep"\noptions = { seconds = 0.0, trace_dir = "traces" }\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", "-w", str(tmp_path / "ws"), "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 2
    assert len(list((folder / "traces").iterdir())) == 2
    assert not (elsewhere / "traces").exists()


def test_status_after_a_rerun_with_nothing_to_do_reports_the_run_that_worked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cohort(tmp_path / "data", 3)
    config = tmp_path / "run.toml"
    config.write_text(
        'name = "again"\n[items]\nlist = "data/items.csv"\n'
        '[[steps]]\nname = "load_array"\n[[steps]]\nname = "array_stats"\n'
    )
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["status", "-w", ws, "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == 0
    assert main(["status", "-w", ws, "--json"]) == 0
    text = capsys.readouterr().out
    after = json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    # The same figures as before the no-op re-run: the session that did the work.
    assert after["elapsed_s"] == before["elapsed_s"]
    assert after["throughput_per_h"] == before["throughput_per_h"]
    assert 0 < after["elapsed_s"] <= first["elapsed_s"] + 0.001  # (rounded to ms)
    assert after["throughput_per_h"] == pytest.approx(3 * 3600 / after["elapsed_s"])
    assert before["last_session_ran"] == 3 and after["last_session_ran"] == 0
    assert main(["status", "-w", ws]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_status_of_a_run_that_never_finished_an_item_has_no_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cohort(tmp_path / "data", 2, corrupt=(0, 1))
    config = tmp_path / "run.toml"
    config.write_text(
        'name = "bad"\nmax_attempts = 1\n[items]\nlist = "data/items.csv"\n'
        '[[steps]]\nname = "load_array"\n'
    )
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 1
    capsys.readouterr()
    assert main(["status", "-w", ws, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["failed"] == 2
    assert status["throughput_per_h"] is None and status["eta_s"] is None
