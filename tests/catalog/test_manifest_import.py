from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.catalog.database import Catalog
from kneescope.catalog.ingest import detect_kind, ingest
from kneescope.catalog.manifest import import_manifest
from kneescope.catalog.queries import list_series, summarize
from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.errors import InputError
from kneescope.io.itk_formats import write_itk
from kneescope.io.nifti import write_nifti


def _volume(seed: int, dtype: type = np.int16) -> Volume:
    rng = np.random.default_rng(seed)
    c, s = np.cos(0.2 * seed), np.sin(0.2 * seed)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    affine = affine_from_axes([10.0 * seed, -5.0, 3.0], rotation, (0.5, 0.4, 0.7))
    return Volume(rng.integers(0, 1000, size=(12, 10, 6)).astype(dtype), affine)


@pytest.fixture
def manifest_folder(tmp_path: Path) -> Path:
    root = tmp_path / "cohort"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "segs").mkdir()
    a, b, c = _volume(1), _volume(2), _volume(3)
    write_nifti(a, root / "images" / "case001.nii.gz")
    write_itk(b, root / "images" / "case002.mha")
    write_nifti(c, root / "images" / "case003.nii.gz")
    write_nifti(a.with_array((a.array > 500).astype(np.uint8)), root / "segs" / "a_seg.nii.gz")
    write_nifti(b.with_array((b.array > 500).astype(np.uint8)), root / "labels" / "case002.nii.gz")
    wrong = Volume(np.zeros((5, 5, 5), np.uint8), c.affine_ras)
    write_nifti(wrong, root / "labels" / "case003.nii.gz")
    (root / "images" / "broken.nii.gz").write_bytes(b"not an image at all")
    (root / "manifest.csv").write_text(
        "path,subject,visit,side,sequence,label_path\n"
        "images/case001.nii.gz,S001,V00,right,DESS,segs/a_seg.nii.gz\n"
        "images/case002.mha,S001,1,L,dess,\n"
        "images/case003.nii.gz,S002,V00,left,DESS,\n"
        "images/broken.nii.gz,S002,V01,left,DESS,\n"
        "images/missing.nii.gz,S003,V00,right,DESS,\n"
        "images/case001.nii.gz.bad,S003,baseline,right,DESS,\n",
        encoding="utf-8",
    )
    return root


def test_manifest_ingest(catalog: Catalog, manifest_folder: Path) -> None:
    assert detect_kind(manifest_folder) == "manifest"
    assert detect_kind(manifest_folder / "manifest.csv") == "manifest"
    report = ingest(catalog, manifest_folder)
    assert report.kind == "manifest"
    assert (report.added, report.failed, report.labels) == (6, 3, 2)
    failures = dict(report.failures)
    assert "line 7" in failures[str(manifest_folder / "images" / "case001.nii.gz.bad")]
    label_failure = failures[str(manifest_folder / "labels" / "case003.nii.gz")]
    assert "shape" in label_failure
    rows = {Path(r.path).name: r for r in list_series(catalog)}
    one = rows["case001.nii.gz"]
    assert (one.subject, one.visit, one.side, one.sequence, one.kind, one.status) == (
        "S001",
        "V00",
        "right",
        "DESS",
        "mri",
        "ok",
    )
    assert one.shape == (12, 10, 6)
    assert one.spacing_mm == pytest.approx((0.5, 0.4, 0.7))
    assert one.label_paths == (str(manifest_folder / "segs" / "a_seg.nii.gz"),)
    two = rows["case002.mha"]
    assert (two.visit, two.side, two.sequence) == ("V01", "left", "DESS")
    assert two.label_paths == (str(manifest_folder / "labels" / "case002.nii.gz"),)
    assert rows["case003.nii.gz"].label_paths == ()
    assert rows["broken.nii.gz"].status == "failed"
    assert rows["missing.nii.gz"].status == "failed"
    assert summarize(catalog).label_maps == 2

    again = import_manifest(catalog, manifest_folder)
    # unchanged files are skipped (also the broken one); missing files and bad rows re-checked
    assert (again.added, again.updated, again.unchanged, again.labels) == (0, 2, 4, 0)
    assert again.failed == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file_name,subject\nx.nii,S1\n", "needs columns 'path' and 'subject'"),
        ("path,subject\na.nii,S1\na.nii,S2\n", "listed again"),
        ("path,subject\n,S1\n", "empty path"),
    ],
)
def test_bad_manifest_writes_nothing(
    sqlite_catalog: Catalog, tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "manifest.csv").write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        import_manifest(sqlite_catalog, tmp_path)
    assert summarize(sqlite_catalog).series == 0


def test_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        detect_kind(tmp_path / "nope")
    with pytest.raises(InputError, match="neither an OAI-style tree"):
        detect_kind(tmp_path)
    (tmp_path / "x.bin").write_bytes(b"\x00")
    with pytest.raises(InputError, match="expected a folder"):
        detect_kind(tmp_path / "x.bin")
    (tmp_path / "kxr.txt").write_text("ID|V00XRKL\n9000001|2: definite\n", encoding="utf-8")
    assert detect_kind(tmp_path / "kxr.txt") == "clinical"
