"""Scan settings of the generator: contrast in `kneescope synth`, tissue maps on disk,
motion ghosts and Gibbs ringing (artefacts change the image, never the truth)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from kneescope.core import tissues as tt
from kneescope.io import read_nifti
from kneescope.synth.knee import PHASE_ENCODE_AXIS, KneeSample, render_knee
from kneescope.synth.params import FULL, FULL_THICK, SMALL, KneeParams


def _params(**scan: object) -> KneeParams:
    return KneeParams.model_validate({"noise_sigma": 0.0, "bias_strength": 0.0, **scan})


@pytest.fixture(scope="module")
def clean() -> KneeSample:
    return render_knee(_params(), SMALL)


@pytest.mark.slow  # default suite time; its logic is covered by faster tests
def test_synth_cli_contrast_and_tissue_maps(tmp_path: Path) -> None:
    out = tmp_path / "t1"
    cmd = [sys.executable, "-m", "kneescope", "synth", "-o", str(out), "-n", "1"]
    cmd += ["--visits", "V00", "--no-xray", "--contrast", "T1-GRE", "--tissues"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((out / "synth_spec.json").read_text(encoding="utf-8"))
    assert spec["contrast"] == "t1-gre" and spec["tissues"] is True
    with (out / "labels" / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    lut = tt.tissue_label_lut()
    for row in rows:
        first = sorted((out / row["Folder"]).iterdir())[0]
        description = str(pydicom.dcmread(first, stop_before_pixels=True).SeriesDescription)
        assert description == f"SAG_T1_3D_FLASH_{row['Side'].upper()}"
        labels = read_nifti(out / row["LabelPath"])
        tissue_path = out / "tissues" / Path(row["LabelPath"]).name
        tissues = read_nifti(tissue_path)
        assert tissues.same_grid(labels)
        assert np.array_equal(lut[tissues.array], labels.array)
        assert {tt.FAT, tt.MUSCLE, tt.FEMUR_MARROW} <= set(np.unique(tissues.array).tolist())


def test_synth_cli_refuses_an_unknown_contrast(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "kneescope", "synth", "-o", str(tmp_path / "x")]
    proc = subprocess.run([*cmd, "--contrast", "flair"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "flair" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_motion_ghosts_replicate_the_knee_along_phase_encode(clean: KneeSample) -> None:
    ghosted = render_knee(_params(motion_ghosts=0.8), SMALL)
    assert np.array_equal(ghosted.labels.array, clean.labels.array)
    assert np.array_equal(ghosted.tissues.array, clean.tissues.array)
    assert ghosted.truth == clean.truth
    air = clean.tissues.array == tt.BACKGROUND
    before = clean.image.array[air].astype(np.float64).mean()
    after = ghosted.image.array[air].astype(np.float64).mean()
    # noise-free air is black; ghosts put a visible fraction of the knee's signal there
    assert before < 1.0 and after > 20.0
    # the signal is moved, not created: phase errors keep the energy (Parseval)
    energy = float((ghosted.image.array.astype(np.float64) ** 2).sum())
    assert energy == pytest.approx(
        float((clean.image.array.astype(np.float64) ** 2).sum()), rel=0.01
    )
    assert PHASE_ENCODE_AXIS == 2


def test_gibbs_truncates_k_space_and_rings(clean: KneeSample) -> None:
    ringing = render_knee(_params(gibbs=0.4), SMALL)
    assert np.array_equal(ringing.labels.array, clean.labels.array)
    assert ringing.truth == clean.truth

    def outer_energy(image: np.ndarray) -> float:
        """Share of each slice's k-space energy beyond 0.3 cycles/voxel (either axis)."""
        spec = np.abs(np.fft.fft2(image.astype(np.float64))) ** 2
        fj = np.abs(np.fft.fftfreq(image.shape[1]))[:, None]
        fk = np.abs(np.fft.fftfreq(image.shape[2]))[None, :]
        outer = (fj > 0.3) | (fk > 0.3)
        return float(spec[:, outer].sum() / spec.sum())

    # removed: everything beyond (1 - 0.4) / 2 = 0.3 cycles/voxel (rounding to uint16 and the
    # magnitude leave a trace)
    assert outer_energy(clean.image.array) > 1e-3
    assert outer_energy(ringing.image.array) < 0.05 * outer_energy(clean.image.array)
    # ringing: next to bright edges the image over- and undershoots
    assert ringing.image.array.max() > clean.image.array.max()


def test_artefact_free_scan_is_unchanged_by_the_new_settings(clean: KneeSample) -> None:
    explicit = render_knee(_params(motion_ghosts=0.0, gibbs=0.0, contrast="dess"), SMALL)
    assert explicit.image.array.tobytes() == clean.image.array.tobytes()


def test_thick_slice_grid_covers_the_full_field_of_view() -> None:
    assert FULL_THICK.fov_mm == pytest.approx(FULL.fov_mm)
    assert FULL_THICK.spacing_mm[0] == pytest.approx(2 * FULL.spacing_mm[0])
    assert FULL_THICK.shape[1:] == FULL.shape[1:]
