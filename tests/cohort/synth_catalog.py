"""A tiny real catalog for item-unit and cohort-step tests: `kneescope synth` + `ingest`.

One synthetic subject at V00 and V01 (radiographs only: a bilateral PA knee film per visit
and a full-leg film at V00, plus the synthetic clinical tables), and two small right-knee
MRI files (V00 and V01) added through a manifest, so that every item unit has something to
group. Built once per test module (about 5 s) and copied per test.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kneescope.core import Volume
from kneescope.io import write_nifti


@dataclass(frozen=True)
class SynthCatalog:
    """A workspace folder whose catalog holds the synthetic series, and the truth tables."""

    workspace: Path
    synth: Path
    subject: str

    def xray_truth(self) -> list[dict[str, str]]:
        """Rows of truth/xray_truth.csv (ParticipantID, Visit, Side, Folder, KLG, mJSW...)."""
        with (self.synth / "truth" / "xray_truth.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    def leg_truth(self) -> list[dict[str, str]]:
        """Rows of truth/full_leg_truth.csv (ParticipantID, Visit, Side, Folder, HKA_deg...)."""
        with (self.synth / "truth" / "full_leg_truth.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))


def kneescope(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the kneescope CLI in a fresh process; fail the test with its stderr on error."""
    proc = subprocess.run(
        [sys.executable, "-m", "kneescope", *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def build_synth_catalog(root: Path) -> SynthCatalog:
    """Synthesize, write the MRI manifest and ingest everything into ``root/ws``."""
    ws = root / "ws"
    ws.mkdir(parents=True)
    synth = ws / "synth"
    kneescope("synth", "-o", str(synth), "-n", "1", "--visits", "V00,V01", "--no-mri")
    with (synth / "truth" / "subjects.csv").open(newline="") as handle:
        (subject,) = (row["ParticipantID"] for row in csv.DictReader(handle))
    mri = ws / "mri"
    mri.mkdir()
    lines = ["path,subject,visit,side,sequence,modality"]
    for visit in ("V00", "V01"):
        array = np.full((6, 5, 4), 100.0 + (visit == "V01"), dtype=np.float32)
        write_nifti(Volume(array, np.eye(4)), mri / f"{subject}_{visit}_R.nii.gz")
        lines.append(f"{subject}_{visit}_R.nii.gz,{subject},{visit},right,DESS,MR")
    (mri / "manifest.csv").write_text("\n".join(lines) + "\n")
    kneescope("ingest", str(synth), "-w", str(ws), "-j", "1")
    kneescope("ingest", str(mri), "-w", str(ws), "-j", "1")
    return SynthCatalog(ws, synth, subject)


def copy_synth_catalog(template: SynthCatalog, root: Path) -> SynthCatalog:
    """A private copy (the catalog stores workspace-relative paths, so it moves along)."""
    ws = root / "ws"
    shutil.copytree(template.workspace, ws)
    return SynthCatalog(ws, ws / "synth", template.subject)
