"""DICOM series: geometry, ordering, rescale, bad inputs (real files written with pydicom)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from io_test_helpers import (
    canonical_series,
    oblique_volume,
    origins,
    quaternions,
    sitk_to_ras,
    spacings,
)

from kneescope.core import Volume
from kneescope.errors import DicomError, GeometryError, InputError
from kneescope.io.dicom_series import read_dicom_series, scan_dicom_series
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series

META = DicomWriteMeta(patient_id="9000001", study_date="20050101", uid_seed="prop")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=quaternions, spacing=spacings, origin=origins, mirrored=st.booleans())
def test_oblique_series_round_trip_matches_simpleitk(
    q: tuple[float, ...],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    mirrored: bool,
) -> None:
    import SimpleITK as sitk  # noqa: N813

    volume = oblique_volume(q, spacing, origin, mirrored=mirrored)
    expected_array, expected_affine = canonical_series(volume)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        write_dicom_series(volume, folder, meta=META)
        back = read_dicom_series(folder)
        assert back.array.dtype == np.uint16
        np.testing.assert_array_equal(back.array, expected_array)
        np.testing.assert_allclose(back.affine_ras, expected_affine, atol=1e-6)
        if not mirrored:
            np.testing.assert_allclose(back.affine_ras, volume.affine_ras, atol=1e-6)

        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        itk_array, itk_affine = sitk_to_ras(reader.Execute())
        np.testing.assert_array_equal(itk_array, expected_array)
        np.testing.assert_allclose(itk_affine, back.affine_ras, atol=1e-5)


def test_scan_reports_header_facts(series_dir: tuple[Path, Volume]) -> None:
    folder, volume = series_dir
    info = scan_dicom_series(folder)
    assert info.shape == volume.shape
    assert info.n_slices == 5
    np.testing.assert_allclose(info.spacing_mm, (0.36, 0.4, 0.7), atol=1e-9)
    np.testing.assert_allclose(info.affine_ras, volume.affine_ras, atol=1e-6)
    assert info.orientation == volume.orientation
    assert [p.name for p in info.files] == ["001", "002", "003", "004", "005"]
    assert info.laterality == "right"
    assert info.patient_id == "9000099"
    assert info.study_date == "20040512"
    assert info.series_description == "SAG_3D_DESS_RIGHT"
    assert info.modality == "MR"
    assert info.stored_dtype == "uint16"
    assert (info.rescale_slope, info.rescale_intercept) == (1.0, 0.0)


def test_shuffled_file_names_read_in_position_order(series_dir: tuple[Path, Volume]) -> None:
    folder, volume = series_dir
    names = sorted(p.name for p in folder.iterdir())
    perm = [3, 0, 4, 1, 2]
    for name in names:
        os.rename(folder / name, folder / f"tmp{name}")
    for src, dst in zip(names, [names[i] for i in perm], strict=True):
        os.rename(folder / f"tmp{src}", folder / dst)
    info = scan_dicom_series(folder)
    assert [p.name for p in info.files] == [names[perm[k]] for k in range(5)]
    back = read_dicom_series(folder)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine_ras, volume.affine_ras, atol=1e-6)


def test_stray_subfolder_is_ignored(series_dir: tuple[Path, Volume]) -> None:
    folder, volume = series_dir
    (folder / "stray").mkdir()
    (folder / "stray" / "junk.txt").write_text("x")
    np.testing.assert_array_equal(read_dicom_series(folder).array, volume.array)


def test_written_bytes_are_deterministic(tmp_path: Path, meta: DicomWriteMeta) -> None:
    volume = oblique_volume((1, 0, 0, 0), (0.5, 0.5, 1.0), (0, 0, 0), shape=(4, 3, 3))
    write_dicom_series(volume, tmp_path / "a", meta=meta)
    write_dicom_series(volume, tmp_path / "b", meta=meta)
    for name in ("001", "002", "003"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = meta.model_copy(update={"uid_seed": "other"})
    write_dicom_series(volume, tmp_path / "c", meta=other)
    assert (
        scan_dicom_series(tmp_path / "c").series_uid != scan_dicom_series(tmp_path / "a").series_uid
    )
    assert (
        scan_dicom_series(tmp_path / "c").study_uid == scan_dicom_series(tmp_path / "a").study_uid
    )


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_written_files_pass_dciodvfy(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    out = subprocess.run(
        ["dciodvfy", str(folder / "001")], capture_output=True, text=True, check=False
    )
    report = out.stdout + out.stderr
    assert "MRImage" in report
    assert "Error" not in report, report


def _edit(path: Path, **values: object) -> None:
    ds = pydicom.dcmread(path)
    for key, value in values.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_rescale_integer_intercept_keeps_integers(series_dir: tuple[Path, Volume]) -> None:
    folder, volume = series_dir
    for path in folder.iterdir():
        _edit(path, RescaleSlope="1", RescaleIntercept="-1024")
    back = read_dicom_series(folder)
    assert back.array.dtype.kind == "i"
    np.testing.assert_array_equal(back.array, volume.array.astype(np.int64) - 1024)


def test_rescale_fractional_slope_gives_float32(series_dir: tuple[Path, Volume]) -> None:
    folder, volume = series_dir
    for path in folder.iterdir():
        _edit(path, RescaleSlope="0.5", RescaleIntercept="2")
    back = read_dicom_series(folder)
    assert back.array.dtype == np.float32
    np.testing.assert_allclose(back.array, volume.array * 0.5 + 2)


def test_rescale_varying_per_slice(series_dir: tuple[Path, Volume]) -> None:
    folder, volume = series_dir
    _edit(folder / "002", RescaleSlope="2", RescaleIntercept="0")
    info = scan_dicom_series(folder)
    assert info.rescale_varies
    back = read_dicom_series(folder)
    expected = volume.array.astype(np.float64)
    expected[:, :, 1] *= 2
    np.testing.assert_allclose(back.array, expected)


# ---- bad inputs ----------------------------------------------------------------------------


def test_missing_folder_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        scan_dicom_series(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="no DICOM files"):
        scan_dicom_series(tmp_path)


def test_non_dicom_file_among_slices(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    (folder / "notes.txt").write_text("scanner log")
    with pytest.raises(DicomError, match=r"notes.txt: not a DICOM file"):
        read_dicom_series(folder)


def test_mixed_series_uid(series_dir: tuple[Path, Volume], meta: DicomWriteMeta) -> None:
    folder, volume = series_dir
    other = folder.parent / "other"
    write_dicom_series(volume, other, meta=meta.model_copy(update={"series_number": 9}))
    shutil.copy(other / "003", folder / "103")
    with pytest.raises(DicomError, match="mixed series: SeriesInstanceUID"):
        scan_dicom_series(folder)


def test_mixed_orientation(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    _edit(folder / "004", ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    with pytest.raises(DicomError, match="mixed series: ImageOrientationPatient"):
        scan_dicom_series(folder)


def test_mixed_shape(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    ds = pydicom.dcmread(folder / "002")
    ds.Rows = 3
    ds.Columns = 2
    ds.PixelData = np.zeros((3, 2), np.uint16).tobytes()
    ds.save_as(folder / "002")
    with pytest.raises(DicomError, match=r"mixed series: \(Rows, Columns\)"):
        scan_dicom_series(folder)


def test_duplicate_slice(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    shutil.copy(folder / "003", folder / "006")
    with pytest.raises(DicomError, match="duplicate slices"):
        scan_dicom_series(folder)


def test_missing_slice(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    (folder / "003").unlink()
    with pytest.raises(DicomError, match=r"missing slice\(s\).*1 slice\(s\) absent"):
        scan_dicom_series(folder)


def test_inconsistent_spacing(series_dir: tuple[Path, Volume]) -> None:
    folder, volume = series_dir
    shifted = volume.affine_lps @ np.array([0.0, 0.0, 2.3, 1.0])
    _edit(folder / "003", ImagePositionPatient=[f"{v:.6f}" for v in shifted[:3]])
    with pytest.raises(DicomError, match="inconsistent slice spacing"):
        scan_dicom_series(folder)


def test_truncated_file(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    data = (folder / "002").read_bytes()
    (folder / "002").write_bytes(data[:-20])
    with pytest.raises(DicomError, match="truncated"):
        scan_dicom_series(folder)


def test_truncated_header(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    data = (folder / "002").read_bytes()
    (folder / "002").write_bytes(data[:300])
    with pytest.raises(DicomError, match="002"):
        scan_dicom_series(folder)


def test_absurd_size_refused_before_allocation(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    for path in folder.iterdir():
        _edit(path, Rows=60000, Columns=60000)
    with pytest.raises(DicomError, match="voxels"):
        read_dicom_series(folder)


def test_absurd_total_over_slices(
    series_dir: tuple[Path, Volume], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kneescope.core.volume as volume_module

    folder, _ = series_dir
    monkeypatch.setattr(volume_module, "MAX_VOXELS", 7 * 6 * 4)
    with pytest.raises(DicomError, match="voxels"):
        scan_dicom_series(folder)


def test_single_slice_is_2d(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    for name in ("002", "003", "004", "005"):
        (folder / name).unlink()
    with pytest.raises(DicomError, match="single slice"):
        read_dicom_series(folder)


def test_write_refuses_float_and_leaves_nothing(tmp_path: Path, meta: DicomWriteMeta) -> None:
    volume = Volume(np.zeros((3, 3, 3), np.float32), np.eye(4))
    with pytest.raises(InputError, match="integer"):
        write_dicom_series(volume, tmp_path / "s", meta=meta)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_sheared_affine(tmp_path: Path, meta: DicomWriteMeta) -> None:
    affine = np.eye(4)
    affine[0, 2] = 0.5  # slice axis not perpendicular to the slices
    volume = Volume(np.zeros((3, 3, 3), np.uint16), affine)
    with pytest.raises(GeometryError, match="sheared"):
        write_dicom_series(volume, tmp_path / "s", meta=meta)
    assert list(tmp_path.iterdir()) == []


def test_int16_data_round_trip(tmp_path: Path, meta: DicomWriteMeta) -> None:
    array = np.arange(-30, 30, dtype=np.int16).reshape(5, 4, 3)
    volume = Volume(array, np.diag([0.5, 0.5, 2.0, 1.0]))
    write_dicom_series(volume, tmp_path / "s", meta=meta)
    back = read_dicom_series(tmp_path / "s")
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, array)


def test_missing_position_header(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    ds = pydicom.dcmread(folder / "002")
    del ds.ImagePositionPatient
    ds.save_as(folder / "002")
    with pytest.raises(DicomError, match="002: missing or malformed ImagePositionPatient"):
        scan_dicom_series(folder)


def test_non_orthogonal_orientation_header(series_dir: tuple[Path, Volume]) -> None:
    folder, _ = series_dir
    for path in folder.iterdir():
        _edit(path, ImageOrientationPatient=[1, 0, 0, 0.5, 0.5, 0])
    with pytest.raises(DicomError, match="not two orthogonal unit vectors"):
        scan_dicom_series(folder)
