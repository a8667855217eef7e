"""A tiny cataloged cohort with label maps, for the nnU-Net and Slicer export tests.

Three knees with label maps (subject S001 right and left at V00, both as DICOM series; S002
right at V00 as NIfTI) and one without (S002 V01), ingested through a manifest. Each label map
holds kneescope's label values 0..9 in blocks (the known truth the exports must reproduce
voxel for voxel); images are oblique, so geometry errors show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series
from kneescope.io.nifti import write_nifti

SHAPE = (10, 14, 12)


@dataclass(frozen=True)
class Knee:
    """One knee of the cohort: catalog fields and its truth."""

    subject: str
    visit: str
    side: str
    image: Volume
    labels: Volume | None


def _knee_volumes(seed: int) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(seed)
    c, s = np.cos(0.15 * seed), np.sin(0.15 * seed)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    affine = affine_from_axes([5.0 * seed, -20.0, 12.0], rotation, (0.7, 0.4, 0.45))
    labels = np.zeros(SHAPE, np.uint8)
    for value in range(1, 10):  # a slab per structure, shifted a little per knee
        lo = (value - 1) + seed % 2
        labels[1:9, lo : lo + 2, 2 + seed % 3 : 10] = value
    image = (labels.astype(np.int16) * 40 + rng.integers(0, 30, SHAPE)).astype(np.int16)
    return Volume(image, affine), Volume(labels, affine)


def build_cohort(root: Path) -> list[Knee]:
    """Write the cohort below ``root`` (with ``manifest.csv``); returns its knees."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    knees: list[Knee] = []
    rows = ["path,subject,visit,side,sequence,label_path"]
    plan = [("S001", "V00", "right", True), ("S001", "V00", "left", True)]
    plan += [("S002", "V00", "right", False), ("S002", "V01", "right", False)]
    for n, (subject, visit, side, dicom) in enumerate(plan, start=1):
        image, labels = _knee_volumes(n)
        name = f"{subject}_{visit}_{side}"
        if dicom:
            meta = DicomWriteMeta(
                patient_id=subject,
                study_date="20040512",
                study_description="OAI^MR^ENROLLMENT",
                series_description=f"SAG_3D_DESS_{side.upper()}",
                series_number=n,
                laterality=side,
                uid_seed=f"interop-{n}",
            )
            write_dicom_series(image, root / "images" / name, meta=meta)
            rel = f"images/{name}"
        else:
            write_nifti(image, root / "images" / f"{name}.nii.gz")
            rel = f"images/{name}.nii.gz"
        with_labels = visit == "V00"
        if with_labels:
            write_nifti(labels, root / "labels" / f"{name}.nii.gz")
        rows.append(
            f"{rel},{subject},{visit},{side},DESS,"
            + (f"labels/{name}.nii.gz" if with_labels else "")
        )
        knees.append(Knee(subject, visit, side, image, labels if with_labels else None))
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return knees


_INGESTED: dict[str, tuple[list[Knee], Path]] = {}


def ingested_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Knee], Path]:
    """The cohort written and ingested into a workspace once per test process (the nnU-Net
    and Slicer export tests share it): its knees and the workspace folder. Tests write
    their exports into folders of their own (or under distinct names in WS/exports)."""
    if "cohort" not in _INGESTED:
        from kneescope.cli.app import main

        root = tmp_path_factory.mktemp("interop")
        knees = build_cohort(root / "cohort")
        workspace = root / "ws"
        workspace.mkdir()
        code = main(["ingest", str(root / "cohort"), "-w", str(workspace), "--jobs", "1"])
        assert code == 0, "ingest of the interop cohort failed"
        _INGESTED["cohort"] = (knees, workspace)
    return _INGESTED["cohort"]
