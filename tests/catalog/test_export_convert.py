from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK
from oai_dicom_tree import OaiTree

from kneescope.catalog.convert import convert_catalog, store_key_for
from kneescope.catalog.database import Catalog
from kneescope.catalog.export import export_series
from kneescope.catalog.oai import import_oai_tree
from kneescope.catalog.queries import SeriesFilter, list_series, summarize
from kneescope.core import Volume
from kneescope.errors import InputError, NotFoundError
from kneescope.io.nifti import write_nifti
from kneescope.io.zarr_store import VolumeStore


def _dess(catalog: Catalog, tree: OaiTree) -> int:
    path = str(tree.good["dess_v00"].folder)
    return next(r.id for r in list_series(catalog) if r.path == path)


def test_export_nifti_and_nrrd_geometry_exact(
    catalog: Catalog, oai_tree: OaiTree, tmp_path: Path
) -> None:
    truth = oai_tree.good["dess_v00"]
    labels = (truth.array > 2000).astype(np.uint8)
    (oai_tree.root / "labels").mkdir()
    write_nifti(Volume(labels, truth.affine_ras), oai_tree.root / "labels" / "10219306.nii.gz")
    report = import_oai_tree(catalog, oai_tree.root)
    assert report.labels == 1
    series_id = _dess(catalog, oai_tree)

    (tmp_path / "out").mkdir()  # export creates no folder for a given file
    nii = export_series(catalog, str(series_id), "nifti", tmp_path / "out" / "dess.nii.gz")
    img = nib.load(nii.path)
    assert np.allclose(img.affine, truth.affine_ras, atol=1e-5)
    assert np.array_equal(np.asarray(img.dataobj), truth.array)

    nrrd = export_series(catalog, truth.uid, "nrrd", tmp_path / "dess.nrrd")
    image = SimpleITK.ReadImage(nrrd.path)
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ truth.affine_ras
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    assert np.allclose(image.GetSpacing(), spacing, atol=1e-6)
    assert np.allclose(image.GetOrigin(), affine_lps[:3, 3], atol=1e-6)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    assert np.allclose(direction, affine_lps[:3, :3] / spacing, atol=1e-6)
    assert np.array_equal(SimpleITK.GetArrayFromImage(image).transpose(), truth.array)

    lab = export_series(catalog, str(series_id), "nifti", tmp_path / "lab.nii", labels=True)
    lab_img = nib.load(lab.path)
    assert np.array_equal(np.asarray(lab_img.dataobj), labels)
    assert np.allclose(lab_img.affine, truth.affine_ras, atol=1e-5)
    assert lab.dtype == "uint8"

    xr = next(r for r in list_series(catalog, SeriesFilter(kind="radiograph")))
    default = export_series(catalog, str(xr.id), "nifti", None, default_dir=tmp_path / "exp")
    assert Path(default.path).name == f"9000099_V00_XR_PA_s{xr.id}.nii.gz"
    assert default.shape == (40, 64)


def test_export_errors(catalog: Catalog, oai_tree: OaiTree, tmp_path: Path) -> None:
    import_oai_tree(catalog, oai_tree.root)
    series_id = str(_dess(catalog, oai_tree))
    failed = list_series(catalog, SeriesFilter(status="failed"))[0]
    with pytest.raises(NotFoundError, match="no series '9999'"):
        export_series(catalog, "9999", "nifti", tmp_path / "x.nii.gz")
    with pytest.raises(InputError, match=r"does not end in \.nrrd"):
        export_series(catalog, series_id, "nrrd", tmp_path / "x.nii.gz")
    with pytest.raises(InputError, match="is not one of"):
        export_series(catalog, series_id, "dicom", tmp_path / "x.dcm")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no label map"):
        export_series(catalog, series_id, "nifti", tmp_path / "x.nii.gz", labels=True)
    with pytest.raises(InputError, match="failed at ingest"):
        export_series(catalog, str(failed.id), "nifti", tmp_path / "x.nii.gz")
    assert list(tmp_path.glob("x.*")) == []


def test_convert_is_bit_exact_and_skips_what_is_done(
    catalog: Catalog, oai_tree: OaiTree, tmp_path: Path
) -> None:
    import_oai_tree(catalog, oai_tree.root)
    store_root = tmp_path / "store"
    first = convert_catalog(catalog, store_root, jobs=1)
    assert (first.converted, first.skipped, first.failed) == (5, 0, 0)
    assert first.bytes_in > 0
    assert first.bytes_out > 0
    store = VolumeStore(store_root)
    assert len(store.keys()) == 5
    truth = oai_tree.good["dess_v00"]
    rec = next(r for r in list_series(catalog) if r.path == str(truth.folder))
    assert rec.store_key == store_key_for(rec.id, "9000099", "V00", "right", "DESS")
    stored = store.read(rec.store_key)
    assert np.array_equal(stored.array, truth.array)
    assert stored.array.dtype == truth.array.dtype
    assert np.allclose(stored.affine_ras, truth.affine_ras, atol=1e-9)
    attrs = store.attrs(rec.store_key)
    assert attrs["source_path"] == str(truth.folder)
    assert attrs["series_uid"] == truth.uid
    assert attrs["files_checksum"] == rec.files_checksum
    assert summarize(catalog).store_entries == 5

    again = convert_catalog(catalog, store_root, jobs=1)
    assert (again.converted, again.skipped, again.bytes_in) == (0, 5, 0)

    touched = truth.folder / "001"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert import_oai_tree(catalog, oai_tree.root).updated == 1
    third = convert_catalog(catalog, store_root, jobs=1)
    assert (third.converted, third.skipped) == (1, 4)
    assert len(store.keys()) == 5


def test_convert_in_parallel_reports_failures_and_goes_on(
    oai_tree: OaiTree, tmp_path: Path
) -> None:
    # worker processes never touch the database: one backend is enough here
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    import_oai_tree(catalog, oai_tree.root)
    gone = oai_tree.good["tse_v00"].folder
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    report = convert_catalog(catalog, tmp_path / "store", jobs=2)
    assert (report.converted, report.failed) == (4, 1)
    assert report.failures[0][0] == str(gone)
    assert "gone" in report.failures[0][1]
    assert report.ratio > 0
    assert report.mb_per_s > 0
    with pytest.raises(InputError, match="at least 1"):
        convert_catalog(catalog, tmp_path / "store", jobs=0)
    catalog.close()
