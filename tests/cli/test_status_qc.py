"""``kneescope status`` shows how many done knees passed QC and which failed, and why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.core.labels import KNEE_LABELS
from kneescope.io import write_nifti
from kneescope.synth.knee import render_knee
from kneescope.synth.params import SizeSpec, sample_knee_params


def _run_config(tmp_path: Path) -> Path:
    """Two label maps of one small synthetic knee: intact, and without femoral cartilage
    (QC must fail it: missing structure). The grid (1.6 x 0.73 mm) is finer than the small
    one, whose 2.33 mm slices can leave too few rays for the osteophyte-free tibial rim (the
    extrusion is then unmeasured, rightly failing QC), and the extrusion grid limits are
    relaxed so that the intact knee can pass."""
    grid = SizeSpec(name="status-qc", shape=(70, 192, 192), spacing_mm=(1.6, 140 / 192, 140 / 192))
    sample = render_knee(sample_knee_params(np.random.default_rng(3), klg=1), grid)
    labels = sample.labels
    femoral = next(v for v, n in KNEE_LABELS.labels.items() if n == "femoral_cartilage")
    broken = labels.array.copy()
    broken[broken == femoral] = 0
    write_nifti(labels, tmp_path / "intact.nii.gz")
    write_nifti(Volume(broken, labels.affine_ras), tmp_path / "broken.nii.gz")
    (tmp_path / "items.csv").write_text(
        "item_id,subject,visit,side,series,path\n"
        "K1-V00-R,K1,V00,right,DESS-1,intact.nii.gz\n"
        "K2-V00-R,K2,V00,right,DESS-2,broken.nii.gz\n"
    )
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "qc"\n\n[items]\nlist = "{tmp_path / "items.csv"}"\n\n'
        '[[steps]]\nname = "load_labels"\n\n'
        '[[steps]]\nname = "measure"\n'
        "options = { extrusion_max_spacing_mm = 3.0, extrusion_max_inplane_mm = 2.0 }\n"
    )
    return config


def test_status_counts_qc_and_names_the_failed_knee(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "-c", str(_run_config(tmp_path)), "--json"]) == 0
    capsys.readouterr()

    assert main(["status", "-w", ws, "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["counts"]["done"] == 2
    assert state["qc"] == {"passed": 1, "failed": 1}
    [failed] = state["qc_failures"]
    assert failed["item_id"] == "K2-V00-R" and "femoral_cartilage" in failed["reasons"]

    assert main(["status", "-w", ws]) == 0
    out = capsys.readouterr().out
    assert "QC: 1 of 2 done items passed, 1 failed" in out
    line = next(x for x in out.splitlines() if x.startswith("QC failed"))
    assert "K2-V00-R" in line and "femoral_cartilage" in line


def test_status_of_a_run_without_qc_says_nothing_about_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "a.npy", np.ones((4, 5, 6), dtype=np.float32))
    (tmp_path / "items.csv").write_text("item_id,path\nA,a.npy\n")
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "plain"\n\n[items]\nlist = "{tmp_path / "items.csv"}"\n\n'
        '[[steps]]\nname = "load_array"\n\n[[steps]]\nname = "array_stats"\n'
    )
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "-c", str(config), "--json"]) == 0
    capsys.readouterr()
    assert main(["status", "-w", ws, "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["qc"] == {} and state["qc_failures"] == []
    assert main(["status", "-w", ws]) == 0
    assert "QC" not in capsys.readouterr().out
