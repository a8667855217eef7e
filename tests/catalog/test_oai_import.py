from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from oai_dicom_tree import OaiTree, write_mr_series

from kneescope.catalog.database import Catalog
from kneescope.catalog.naming import parse_series_description, visit_from_release
from kneescope.catalog.oai import import_oai_tree
from kneescope.catalog.queries import SeriesFilter, list_series, summarize
from kneescope.errors import InputError


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("SAG_3D_DESS_RIGHT", ("DESS", "SAG", "right", "mri")),
        ("SAG_3D_DESS_LEFT", ("DESS", "SAG", "left", "mri")),
        ("COR_IW_TSE_LEFT", ("IW_TSE", "COR", "left", "mri")),
        ("SAG_IW_TSE_RIGHT", ("IW_TSE", "SAG", "right", "mri")),
        ("SAG_T2_MAP_RIGHT", ("T2_MAP", "SAG", "right", "mri")),
        ("AX_MPR_LEFT", ("MPR", "AX", "left", "mri")),
        ("MP_LOCATOR_RIGHT", ("LOCATOR", None, "right", "mri")),
        ("Bilateral PA Fixed Flexion Knee", ("XR_PA", None, None, "radiograph")),
        ("Full Limb", ("XR_FULL_LEG", None, None, "radiograph")),
        ("AP Pelvis", ("XR_PELVIS", None, None, "radiograph")),
        ("PA Right Hand", ("XR_HAND", None, "right", "radiograph")),
        ("something else", (None, None, None, "unknown")),
    ],
)
def test_series_descriptions(description: str, expected: tuple[object, ...]) -> None:
    name = parse_series_description(description)
    assert (name.sequence, name.plane, name.side, name.kind) == expected


def test_release_folders_map_to_visits() -> None:
    pairs = {
        "0.C.2": "V00",
        "0.E.1": "V00",
        "1.C.2": "V01",
        "1.E.1": "V01",
        "2.D.2": "V02",
        "3.C.2": "V03",
        "3.E.1": "V03",
        "4.G.1": "V04",
        "5.C.1": "V05",
        "5.E.1": "V05",
        "6.C.1": "V06",
        "6.E.1": "V06",
        "8.C.1": "V08",
        "8.E.1": "V08",
        "10.C.1": "V10",
        "10.E.1": "V10",
    }
    assert {k: visit_from_release(k) for k in pairs} == pairs
    assert visit_from_release("7.C.1") is None


def test_oai_tree_ingest(catalog: Catalog, oai_tree: OaiTree) -> None:
    report = import_oai_tree(catalog, oai_tree.root)
    assert (report.added, report.updated, report.unchanged) == (7, 0, 0)
    assert report.failed == 2
    assert report.ignored == 1
    failed = {p: r for p, r in report.failures}
    assert set(failed) == {str(oai_tree.truncated), str(oai_tree.not_dicom)}
    assert all("\n" not in r and r for r in failed.values())

    rows = {r.path: r for r in list_series(catalog)}
    assert len(rows) == 7
    dess = rows[str(oai_tree.good["dess_v00"].folder)]
    truth = oai_tree.good["dess_v00"]
    assert (dess.subject, dess.visit, dess.side, dess.sequence, dess.plane) == (
        "9000099",
        "V00",
        "right",
        "DESS",
        "SAG",
    )
    assert (dess.kind, dess.modality, dess.status, dess.series_uid) == (
        "mri",
        "MR",
        "ok",
        truth.uid,
    )
    assert dess.shape == truth.array.shape == (32, 24, 8)
    assert dess.spacing_mm == pytest.approx((0.42, 0.36, 0.7))
    assert dess.n_files == 8
    with catalog.session() as session:
        from kneescope.catalog.schema import Series

        stored = session.get(Series, dess.id)
        assert stored is not None
        assert np.allclose(np.asarray(stored.affine_ras), truth.affine_ras, atol=1e-6)

    tse = rows[str(oai_tree.good["tse_v00"].folder)]
    assert (tse.sequence, tse.side, tse.shape) == ("IW_TSE", "left", (32, 24, 5))
    v01 = rows[str(oai_tree.good["dess_v01"].folder)]
    assert (v01.visit, v01.side) == ("V01", "right")
    left = rows[str(oai_tree.good["dess_left"].folder)]  # not in contents.csv: from headers
    assert (left.subject, left.side, left.sequence) == ("9000296", "left", "DESS")

    xr = rows[str(oai_tree.radiograph.parent)]
    assert (xr.kind, xr.modality, xr.sequence, xr.side) == ("radiograph", "CR", "XR_PA", None)
    assert xr.shape == (40, 64)
    assert xr.spacing_mm == pytest.approx((0.2, 0.2))

    bad = rows[str(oai_tree.truncated)]
    assert (bad.status, bad.subject, bad.visit, bad.sequence, bad.side) == (
        "failed",
        "9000296",
        "V00",
        "DESS",
        "left",
    )
    assert bad.reason
    assert rows[str(oai_tree.not_dicom)].status == "failed"

    s = summarize(catalog)
    assert (s.subjects, s.visits, s.knees) == (2, 4, 3)
    assert s.series_by_status == {"failed": 2, "ok": 5}
    assert len(list_series(catalog, SeriesFilter(visit="V00", side="right"))) == 1


def test_reingest_of_unchanged_tree_adds_nothing(catalog: Catalog, oai_tree: OaiTree) -> None:
    # (how fast a re-ingest is: benchmarks/, docs/benchmarks.md; no timing in the test suite)
    import_oai_tree(catalog, oai_tree.root)
    before = {r.path: (r.id, r.ingested_at) for r in list_series(catalog)}
    again = import_oai_tree(catalog, oai_tree.root)
    assert (again.added, again.updated, again.failed, again.unchanged) == (0, 0, 0, 7)
    assert {r.path: (r.id, r.ingested_at) for r in list_series(catalog)} == before


def test_changed_and_new_series_are_reingested(catalog: Catalog, oai_tree: OaiTree) -> None:
    import_oai_tree(catalog, oai_tree.root)
    # fix the truncated series in place; touch one good series; add one new series
    write_mr_series(
        oai_tree.truncated,
        patient="9000296",
        date="20041001",
        description="SAG_3D_DESS_LEFT",
        seed=4,
    )
    touched = oai_tree.good["tse_v00"].folder / "001"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    new = write_mr_series(
        oai_tree.root / "3.C.2/9000296/20061001/12000001",
        patient="9000296",
        date="20061001",
        description="SAG_3D_DESS_LEFT",
        seed=5,
    )
    report = import_oai_tree(catalog, oai_tree.root)
    assert (report.added, report.updated, report.unchanged, report.failed) == (1, 2, 5, 0)
    rows = {r.path: r for r in list_series(catalog)}
    assert rows[str(oai_tree.truncated)].status == "ok"
    assert rows[str(oai_tree.truncated)].reason is None
    assert rows[str(new.folder)].visit == "V03"


def test_single_release_folder_and_bad_roots(catalog: Catalog, oai_tree: OaiTree) -> None:
    report = import_oai_tree(catalog, oai_tree.root / "1.C.2")
    assert (report.added, report.failed) == (2, 1)
    with pytest.raises(InputError, match="no OAI release folders"):
        import_oai_tree(catalog, oai_tree.root / "0.C.2" / "9000099")
    with pytest.raises(InputError, match="not a folder"):
        import_oai_tree(catalog, oai_tree.root / "missing")


def test_labels_folder_added_later_is_attached_on_reingest(
    catalog: Catalog, oai_tree: OaiTree
) -> None:
    from kneescope.core import Volume
    from kneescope.io.nifti import write_nifti

    import_oai_tree(catalog, oai_tree.root)
    truth = oai_tree.good["dess_v01"]
    labels = oai_tree.root / "labels"
    labels.mkdir()
    by_path = labels / "1.C.2_9000099_20050915_11000001.nii.gz"  # synth's naming convention
    write_nifti(Volume((truth.array > 1000).astype(np.uint8), truth.affine_ras), by_path)
    other = oai_tree.good["tse_v00"]
    write_nifti(
        Volume(np.zeros((3, 3, 3), np.uint8), other.affine_ras), labels / f"{other.uid}.nii"
    )
    report = import_oai_tree(catalog, oai_tree.root)
    assert (report.unchanged, report.labels) == (7, 1)
    assert [p for p, _ in report.failures] == [str(labels / f"{other.uid}.nii")]
    rows = {r.path: r for r in list_series(catalog)}
    assert rows[str(truth.folder)].label_paths == (str(by_path),)
    assert rows[str(other.folder)].label_paths == ()
    assert import_oai_tree(catalog, oai_tree.root).labels == 0


def test_parallel_header_reading_gives_the_same_catalog(oai_tree: OaiTree, tmp_path: Path) -> None:
    def facts(catalog: Catalog) -> list[tuple[object, ...]]:
        return sorted(
            (r.path, r.subject, r.visit, r.side, r.sequence, r.shape, r.status, r.header_checksum)
            for r in list_series(catalog)
        )

    serial = Catalog.open(f"sqlite:///{tmp_path / 'serial.sqlite'}")
    parallel = Catalog.open(f"sqlite:///{tmp_path / 'parallel.sqlite'}")
    try:
        one = import_oai_tree(serial, oai_tree.root, jobs=1)
        two = import_oai_tree(parallel, oai_tree.root, jobs=2)
        assert (two.added, two.failed) == (one.added, one.failed) == (7, 2)
        assert sorted(two.failures) == sorted(one.failures)
        assert facts(parallel) == facts(serial)
    finally:
        serial.close()
        parallel.close()


def test_vanished_series_are_marked_failed(catalog: Catalog, oai_tree: OaiTree) -> None:
    import shutil

    import_oai_tree(catalog, oai_tree.root)
    gone = oai_tree.good["dess_v01"].folder
    shutil.rmtree(gone)
    report = import_oai_tree(catalog, oai_tree.root)
    assert (report.missing, report.unchanged, report.added) == (1, 6, 0)
    row = next(r for r in list_series(catalog) if r.path == str(gone))
    assert row.status == "failed"
    assert "no longer exists" in (row.reason or "")
    assert import_oai_tree(catalog, oai_tree.root).missing == 0


def test_single_slice_localizer_is_a_2d_mri(catalog: Catalog, oai_tree: OaiTree) -> None:
    from kneescope.catalog.volumes import read_series

    folder = oai_tree.root / "0.C.2/9000099/20040909/10219301"
    write_mr_series(
        folder, patient="9000099", date="20040909", description="MP_LOCATOR_RIGHT", n_slices=1
    )
    import_oai_tree(catalog, oai_tree.root)
    row = next(r for r in list_series(catalog) if r.path == str(folder))
    assert (row.status, row.kind, row.sequence, row.side) == ("ok", "mri", "LOCATOR", "right")
    assert row.shape == (24, 32)  # as displayed: rows x columns
    assert read_series(row.path, row.kind).shape == (24, 32)


def test_every_kind_of_bad_series_is_recorded_and_the_rest_ingested(
    sqlite_catalog: Catalog, oai_tree: OaiTree
) -> None:
    import shutil

    base = oai_tree.root / "5.C.1/9000099/20080101"
    good = write_mr_series(base / "50000001", patient="9000099", date="20080101",
                           description="SAG_3D_DESS_RIGHT", seed=6)  # fmt: skip
    # mixed series: slices of another series copied in
    mixed = base / "50000002"
    shutil.copytree(good.folder, mixed)
    other = write_mr_series(base / "tmp", patient="9000099", date="20080101",
                            description="SAG_3D_DESS_RIGHT", seed=7)  # fmt: skip
    shutil.copy(other.folder / "001", mixed / "101")
    shutil.rmtree(other.folder)
    # duplicate slice and missing slice
    duplicate = base / "50000003"
    shutil.copytree(good.folder, duplicate)
    shutil.copy(duplicate / "003", duplicate / "103")
    missing = base / "50000004"
    shutil.copytree(good.folder, missing)
    (missing / "004").unlink()
    empty = base / "50000005"
    empty.mkdir()

    report = import_oai_tree(sqlite_catalog, oai_tree.root)
    reasons = dict(report.failures)
    assert "mixed series" in reasons[str(mixed)]
    assert "duplicate slices" in reasons[str(duplicate)]
    assert "missing slice" in reasons[str(missing)]
    assert "no DICOM files" in reasons[str(empty)]
    assert report.failed == 2 + 4
    ok = {r.path for r in list_series(sqlite_catalog, SeriesFilter(status="ok"))}
    assert str(good.folder) in ok
    assert len(ok) == 5 + 1


def test_labels_found_when_one_release_is_ingested(
    sqlite_catalog: Catalog, oai_tree: OaiTree
) -> None:
    from kneescope.core import Volume
    from kneescope.io.nifti import write_nifti

    truth = oai_tree.good["dess_v01"]
    (oai_tree.root / "labels").mkdir()
    label = oai_tree.root / "labels" / "1.C.2_9000099_20050915_11000001.nii.gz"
    write_nifti(Volume((truth.array > 9).astype(np.uint8), truth.affine_ras), label)
    report = import_oai_tree(sqlite_catalog, oai_tree.root / "1.C.2")
    assert report.labels == 1
