"""Adversarial inputs for readers, ingest, convert, export and segment.

Small files that claim gigabytes, FIFOs where files should be, headers pointing anywhere,
corrupt header values, unwritable stores, leftovers of killed runs, Ctrl-C: each must end in
one line and a non-zero exit (or a recorded failure), never a hang, a traceback, an
allocation of what a header merely claims, or exit 0.

Reads that could allocate what a corrupt header claims run in a subprocess under an address
space limit, and reads that could block run in a subprocess with a timeout, so that a
regression fails the test instead of exhausting the machine or hanging the suite.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import pytest
import torch

from kneescope.catalog.convert import convert_catalog
from kneescope.catalog.database import Catalog
from kneescope.catalog.manifest import import_manifest
from kneescope.core import Volume
from kneescope.errors import DicomError, GeometryError, InputError, ModelError
from kneescope.inference.segmentation_model import (
    ModelSpec,
    SegmentationModel,
    load_model,
    save_model,
)
from kneescope.inference.segmenter import SegmentConfig, Segmenter
from kneescope.io import read_volume, write_dicom_series, write_nifti
from kneescope.io.dicom_radiograph import write_dicom_radiograph
from kneescope.io.dicom_write import DicomWriteMeta
from kneescope.io.itk_formats import read_itk
from kneescope.models import NetworkConfig, build_network
from kneescope.transforms.resample import plan_resampling
from kneescope.workspace import Workspace

AFFINE = np.diag([0.5, 0.5, 0.7, 1.0])
HUGE = (1200, 1200, 1200)
"""A claim of 1200^3 int16 voxels: 3.4 GB."""
MEMORY_LIMIT_MB = 1536


def _limit_memory() -> None:
    limit = MEMORY_LIMIT_MB * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _python(code: str, *, timeout: float = 60, limit_memory: bool = False) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (a hang or a crash fails the test)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limit_memory if limit_memory else None,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s (blocked on a read?)")
    return done.stdout.strip() + done.stderr.strip()[-300:]


def _read_outcome(path: Path, *, limit_memory: bool = True, timeout: float = 60) -> str:
    """``OK`` or ``<ExceptionType>: <message>`` of ``read_volume(path)`` in a subprocess."""
    return _python(
        f"""
        from kneescope.io import read_volume
        try:
            read_volume({str(path)!r})
            print("OK")
        except BaseException as exc:
            print(f"{{type(exc).__name__}}: {{exc}}")
        """,
        limit_memory=limit_memory,
        timeout=timeout,
    )


def _kneescope(
    cwd: Path, args: list[str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``kneescope ARGS`` in a subprocess started in ``cwd`` (the default workspace)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "kneescope", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"kneescope {' '.join(args)} still running after {timeout} s")


def _one_error_line(stderr: str) -> str:
    """The one ``error:`` line of a failed command (progress lines before it are fine)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-2000:]
    assert "Traceback" not in stderr
    return errors[0]


def _nifti_header(shape: tuple[int, ...], dtype: type = np.int16) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(AFFINE, code=1)
    header.set_qform(AFFINE, code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


def _small_nifti(path: Path, *, value: int = 1) -> Path:
    array = np.zeros((8, 9, 10), np.int16)
    array[2:6, 3:7, 4:8] = value
    write_nifti(Volume(array, AFFINE), path)
    return path


def _patched_nifti(tmp_path: Path, name: str, offset: int, value: bytes) -> Path:
    raw = bytearray(gzip.decompress(_small_nifti(tmp_path / "src.nii.gz").read_bytes()))
    raw[offset : offset + len(value)] = value
    out = tmp_path / name
    out.write_bytes(bytes(raw))
    return out


# -- small files that claim gigabytes ------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_claiming_gigabytes_is_refused_from_its_header(tmp_path: Path, suffix: str) -> None:
    data = _nifti_header(HUGE) + b"\0" * 948
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(gzip.compress(data) if suffix == ".nii.gz" else data)
    assert path.stat().st_size < 1400
    outcome = _read_outcome(path)
    assert outcome.startswith("InputError:") and "header claims" in outcome, outcome


def test_decoded_size_budget_is_configurable(tmp_path: Path) -> None:
    path = _small_nifti(tmp_path / "small.nii.gz")
    assert read_volume(path).shape == (8, 9, 10)
    outcome = _python(
        f"""
        import os
        os.environ["KNEESCOPE_MAX_IMAGE_BYTES"] = "1K"
        from kneescope.io import read_volume
        try:
            read_volume({str(path)!r})
            print("OK")
        except BaseException as exc:
            print(f"{{type(exc).__name__}}: {{exc}}")
        """
    )
    assert outcome.startswith("InputError:") and "KNEESCOPE_MAX_IMAGE_BYTES" in outcome, outcome


@pytest.mark.parametrize("suffix", [".mhd", ".nrrd", ".nhdr"])
def test_itk_header_claiming_gigabytes_is_refused_from_its_header(
    tmp_path: Path, suffix: str
) -> None:
    import SimpleITK

    small = tmp_path / f"small{suffix}"
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(np.zeros((3, 4, 5), np.int16)), str(small))
    text = small.read_bytes()
    old = b"DimSize = 5 4 3" if suffix == ".mhd" else b"sizes: 5 4 3"
    new = b"DimSize = 1200 1200 1200" if suffix == ".mhd" else b"sizes: 1200 1200 1200"
    assert old in text
    small.write_bytes(text.replace(old, new))
    outcome = _read_outcome(small)
    assert outcome.startswith("InputError:") and "header claims" in outcome, outcome


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".mhd", ".nhdr"])
def test_compressed_itk_image_claiming_a_gigabyte_is_refused_before_decoding(
    tmp_path: Path, suffix: str
) -> None:
    """Within the byte budget, but the compressed stream holds 48 kB of the 1 GB claimed:
    the stream is counted (nothing kept) before SimpleITK allocates the claim."""
    import SimpleITK

    path = tmp_path / f"z{suffix}"
    array = np.arange(20 * 30 * 40, dtype=np.int16).reshape(20, 30, 40)
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(array), str(path), True)
    assert read_volume(path).shape == (40, 30, 20)
    old = b"DimSize = 40 30 20" if suffix in (".mha", ".mhd") else b"sizes: 40 30 20"
    new = b"DimSize = 1000 1000 500" if suffix in (".mha", ".mhd") else b"sizes: 1000 1000 500"
    path.write_bytes(path.read_bytes().replace(old, new))
    outcome = _read_outcome(path)
    assert outcome.startswith("InputError:") and "compressed data holds only" in outcome, outcome


def test_compressed_dicom_claiming_gigabytes_is_refused_from_its_header(tmp_path: Path) -> None:
    """Encapsulated (JPEG) pixel data has no length in the header: the claimed Rows x Columns
    x frames x BitsAllocated must fit the decoded-image budget before decoding."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    path = _radiograph(tmp_path / "xr.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored = 40000, 40000, 32, 32
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9" * 8])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 2000
    outcome = _read_outcome(path)
    assert outcome.startswith("DicomError:") and "header claims" in outcome, outcome


def test_manifest_label_that_claims_gigabytes_fails_only_its_row(tmp_path: Path) -> None:
    source = tmp_path / "cohort"
    source.mkdir()
    _small_nifti(source / "a.nii.gz")
    _small_nifti(source / "b.nii.gz")
    bomb = source / "b_label.nii.gz"
    bomb.write_bytes(gzip.compress(_nifti_header(HUGE, np.uint8)))
    assert bomb.stat().st_size < 200
    (source / "manifest.csv").write_text(
        "path,subject,label_path\na.nii.gz,s1,\nb.nii.gz,s2,b_label.nii.gz\n"
    )
    ws = tmp_path / "ws"
    outcome = _python(
        f"""
        import json
        from pathlib import Path
        from kneescope.catalog.database import Catalog
        from kneescope.catalog.manifest import import_manifest
        from kneescope.workspace import Workspace
        catalog = Catalog.for_workspace(Workspace.resolve(Path({str(ws)!r})), create=True)
        report = import_manifest(catalog, Path({str(source)!r}))
        print(json.dumps({{"added": report.added, "failures": report.failures}}))
        """,
        limit_memory=True,
        timeout=120,
    )
    report = json.loads(outcome.splitlines()[-1]) if outcome.startswith("{") else outcome
    assert isinstance(report, dict), outcome
    assert report["added"] == 2
    assert [Path(p).name for p, _ in report["failures"]] == ["b_label.nii.gz"]
    assert "header claims" in report["failures"][0][1]
    with sqlite3.connect(ws / "catalog.sqlite") as db:
        statuses = db.execute("SELECT status FROM series ORDER BY id").fetchall()
    assert statuses == [("ok",), ("ok",)]


# -- only regular files are read ----------------------------------------------------


def _dicom_series(folder: Path) -> Path:
    meta = DicomWriteMeta(
        patient_id="9000099",
        study_date="20040512",
        study_description="OAI^MR^ENROLLMENT^RIGHT",
        series_description="SAG_3D_DESS_RIGHT",
        series_number=3,
        laterality="right",
        uid_seed="fifo",
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    write_dicom_series(Volume(np.ones((6, 5, 4), np.int16), AFFINE), folder, meta=meta)
    return folder


def test_fifo_in_a_series_folder_or_as_a_file_is_refused_not_read(tmp_path: Path) -> None:
    series = _dicom_series(tmp_path / "series")
    os.mkfifo(series / "zz_fifo")
    outcome = _read_outcome(series, limit_memory=False, timeout=60)
    assert outcome.startswith("InputError:") and "named pipe" in outcome, outcome
    lone = tmp_path / "fifo.nii.gz"
    os.mkfifo(lone)
    outcome = _read_outcome(lone, limit_memory=False, timeout=60)
    assert outcome.startswith("InputError:") and "named pipe" in outcome, outcome


def test_ingest_and_measure_do_not_hang_on_fifos(tmp_path: Path) -> None:
    source = tmp_path / "cohort"
    _dicom_series(source / "series")
    os.mkfifo(source / "series" / "zz_fifo")
    _small_nifti(source / "good.nii.gz")
    (source / "manifest.csv").write_text("path,subject\nseries,s1\ngood.nii.gz,s2\n")
    done = _kneescope(
        tmp_path, ["ingest", str(source), "-w", str(tmp_path / "ws"), "--json"], timeout=90
    )
    with sqlite3.connect(tmp_path / "ws" / "catalog.sqlite") as db:
        rows = dict(db.execute("SELECT path, status FROM series").fetchall())
        reasons = [r for (r,) in db.execute("SELECT reason FROM series WHERE reason IS NOT NULL")]
    assert sorted(rows.values()) == ["failed", "ok"], (rows, done.stderr[-2000:])
    assert len(reasons) == 1 and "named pipe" in reasons[0]
    fifo_label = tmp_path / "labels.nii.gz"
    os.mkfifo(fifo_label)
    measured = _kneescope(tmp_path, ["measure", str(fifo_label)], timeout=90)
    assert measured.returncode == 2
    assert "named pipe" in _one_error_line(measured.stderr)
    manifest_fifo = tmp_path / "manifest.csv"
    os.mkfifo(manifest_fifo)
    ingested = _kneescope(
        tmp_path, ["ingest", str(manifest_fifo), "-w", str(tmp_path / "ws2")], timeout=90
    )
    assert ingested.returncode == 2
    _one_error_line(ingested.stderr)


def test_fifo_as_a_config_file_or_a_table_is_refused_not_read(tmp_path: Path) -> None:
    config, table = tmp_path / "run.toml", tmp_path / "clinical.csv"
    os.mkfifo(config)
    os.mkfifo(table)
    outcome = _python(
        f"""
        from pathlib import Path
        from kneescope.catalog.tables import read_table
        from kneescope.config import read_mapping
        for read, path in ((read_mapping, {str(config)!r}), (read_table, {str(table)!r})):
            try:
                read(Path(path))
                print("OK")
            except BaseException as exc:
                print(f"{{type(exc).__name__}}: {{exc}}")
        """,
        timeout=60,
    )
    config_line, table_line = outcome.splitlines()[:2]
    assert config_line.startswith("ConfigError:") and "not a regular file" in config_line
    assert table_line.startswith("InputError:") and "named pipe" in table_line


def test_cohort_steps_check_headers_and_fifos_before_reading(tmp_path: Path) -> None:
    """``run``'s load_array step and its input checksums decode files themselves: they get
    the readers' checks too (a NIfTI claiming 3.4 GB, a .npy claiming 8 GB, a FIFO)."""
    nifti = tmp_path / "bomb.nii"
    nifti.write_bytes(_nifti_header(HUGE) + b"\0" * 948)
    npy = tmp_path / "bomb.npy"
    with npy.open("wb") as fh:  # a header claiming 1000^3 float64 (8 GB), 64 bytes of data
        header = {"descr": "<f8", "fortran_order": False, "shape": (1000, 1000, 1000)}
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    fifo = tmp_path / "item.nii.gz"
    os.mkfifo(fifo)
    outcome = _python(
        f"""
        from pathlib import Path
        from kneescope.cohort.builtin_steps import read_array_file
        from kneescope.cohort.item import file_checksum
        for call, path in ((read_array_file, {str(nifti)!r}), (read_array_file, {str(npy)!r}),
                           (file_checksum, {str(fifo)!r})):
            try:
                call(Path(path))
                print("OK")
            except BaseException as exc:
                print(f"{{type(exc).__name__}}: {{exc}}")
        """,
        limit_memory=True,
    )
    lines = outcome.splitlines()
    assert len(lines) >= 3, outcome
    assert lines[0].startswith("InputError:") and "header claims" in lines[0], outcome
    assert lines[1].startswith("InputError:") and "header claims" in lines[1], outcome
    assert lines[2].startswith("InputError:") and "named pipe" in lines[2], outcome


# -- segment and model files check sizes before allocating ---------------------------


def _tiny_model(features: tuple[int, int] = (4, 8)) -> SegmentationModel:
    config = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=3, features=features, strides=(2,)
    )
    torch.manual_seed(0)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={1: "femur", 2: "tibia"},
        spacing_mm=(1.0, 1.0, 1.0),
        orientation="RAS",
        roi_size_vox=(8, 8, 8),
    )
    return SegmentationModel(spec=spec, state_dict=build_network(config).state_dict())


def test_segment_refuses_a_resampled_grid_beyond_the_memory_limit() -> None:
    segmenter = Segmenter(_tiny_model(), SegmentConfig(device="cpu", precision="fp32"))
    image = Volume(np.zeros((64, 64, 64), np.int16), np.diag([100.0, 100.0, 100.0, 1.0]))
    with pytest.raises(GeometryError, match="check the image's voxel spacing"):
        segmenter.segment(image, side="right")
    with pytest.raises(GeometryError, match="more than"):
        plan_resampling((384, 384, 160), (36.5, 36.5, 70.0), (0.365, 0.365, 0.7))


def _edited_model_file(tmp_path: Path, edit: Callable[[dict[str, object]], None]) -> Path:
    path = save_model(_tiny_model(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p["network"].update(features=[4, 16384]), "features"),
        (lambda p: p["spec"].update(roi_size_vox=[4096, 4096, 4096]), "window"),
        (lambda p: p["spec"].update(spacing_mm=[0.0, 1.0, 1.0]), "spacing_mm"),
        (lambda p: p["network"].update(features=[4, 9]), "do not fit"),
    ],
    ids=["16384-features", "4096-cubed-window", "zero-spacing", "weights-do-not-fit"],
)
def test_model_file_with_absurd_spec_is_refused_on_load(
    tmp_path: Path, edit: Callable[[dict[str, object]], None], match: str
) -> None:
    path = _edited_model_file(tmp_path, edit)
    with pytest.raises(ModelError, match=match):
        load_model(path)


def test_segment_refuses_an_absurd_window_before_allocating() -> None:
    config = SegmentConfig(device="cpu", roi_size_vox=(4096, 4096, 4096))
    with pytest.raises(InputError, match="window"):
        Segmenter(_tiny_model(), config)


# -- detached data files stay next to their header -----------------------------------


def test_nhdr_data_file_outside_its_folder_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import SimpleITK

    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes(range(120)))
    folder = tmp_path / "headers"
    folder.mkdir()
    header = folder / "a.nhdr"
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(np.zeros((3, 4, 5), np.int16)), str(header))
    header.write_text(header.read_text().replace("data file: a.raw", "data file: ../secret.raw"))
    with pytest.raises(InputError, match="outside the header's folder"):
        read_itk(header)
    with pytest.raises(InputError, match="outside the header's folder"):
        read_volume(header)
    assert read_itk(header, allow_outside_data=True).shape == (5, 4, 3)
    monkeypatch.setenv("KNEESCOPE_ALLOW_OUTSIDE_DATA_FILES", "1")
    assert read_volume(header).shape == (5, 4, 3)
    monkeypatch.delenv("KNEESCOPE_ALLOW_OUTSIDE_DATA_FILES")
    header.write_text(header.read_text().replace("../secret.raw", "/etc/hostname"))
    with pytest.raises(InputError, match="outside the header's folder"):
        read_volume(header)


# -- corrupt header values are one line, never a traceback ---------------------------


def _radiograph(path: Path) -> Path:
    meta = DicomWriteMeta(
        patient_id="9",
        study_date="20050301",
        study_description="OAI^XR",
        series_description="Bilateral PA Fixed Flexion Knee",
        modality="CR",
        uid_seed="xr",
    )
    array = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    return write_dicom_radiograph(Volume(array, np.diag([0.14, 0.14, 1.0, 1.0])), path, meta=meta)


@pytest.mark.parametrize(
    ("tag", "value"),
    [(0x00280010, "abc "), (0x00280008, "x2"), (0x00281053, "abc ")],
    ids=["Rows", "NumberOfFrames", "RescaleSlope"],
)
def test_dicom_with_non_numeric_header_values_is_refused(
    tmp_path: Path, tag: int, value: str
) -> None:
    import pydicom
    from pydicom.dataelem import DataElement

    path = _radiograph(tmp_path / "xr.dcm")
    ds = pydicom.dcmread(path)
    ds[tag] = DataElement(tag, "LO", value)  # a string where a number belongs
    ds.save_as(path)
    with pytest.raises(DicomError, match=r"not an integer|not a finite number"):
        read_volume(path)


def test_corrupt_nifti_headers_are_refused_with_one_line(tmp_path: Path) -> None:
    datatype = _patched_nifti(tmp_path, "dt.nii", 70, np.int16(1234).tobytes())
    with pytest.raises(InputError, match="datatype code 1234"):
        read_volume(datatype)
    scl = np.float32(2.0).tobytes() + np.float32("nan").tobytes()
    nan_inter = _patched_nifti(tmp_path, "nan_inter.nii", 112, scl)
    with pytest.raises(InputError, match="scl_inter is nan"):
        read_volume(nan_inter)
    measured = _kneescope(tmp_path, ["measure", str(datatype), "-o", str(tmp_path / "m.csv")])
    assert measured.returncode == 2
    assert "datatype code 1234" in _one_error_line(measured.stderr)
    assert not (tmp_path / "m.csv").exists()


def test_nifti_without_spacing_is_refused_not_read_as_1mm(tmp_path: Path) -> None:
    """pixdim 0 and neither sform nor qform: nibabel would silently make it 1 mm."""
    header = nib.Nifti1Header()
    header.set_data_shape((8, 9, 10))
    header.set_data_dtype(np.uint8)
    header["pixdim"][1:4] = 0.0
    header["sform_code"] = 0
    header["qform_code"] = 0
    path = tmp_path / "no_spacing.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + bytes(8 * 9 * 10))
    with pytest.raises(GeometryError, match="voxel spacing unknown"):
        read_volume(path)


def test_one_voxel_image_is_refused_by_segment_and_writes_nothing(tmp_path: Path) -> None:
    one = tmp_path / "one.nii.gz"
    write_nifti(Volume(np.ones((1, 1, 1), np.float32), AFFINE), one)
    segmenter = Segmenter(_tiny_model(), SegmentConfig(device="cpu", cascade=True))
    with pytest.raises(InputError, match="too small to segment"):
        segmenter.segment(read_volume(one), side="right")
    model = save_model(_tiny_model(), tmp_path / "tiny.pt")
    out = tmp_path / "out"
    args = ["segment", str(one), "-m", str(model), "-o", str(out), "--side", "right"]
    done = _kneescope(tmp_path, [*args, "--cascade", "-w", str(tmp_path / "ws")])
    assert done.returncode == 2
    assert "too small to segment" in _one_error_line(done.stderr)
    assert not out.exists() or not any(out.iterdir())


# -- convert's exit code and leftovers; export's output folder ---------------


def _workspace_with_series(tmp_path: Path, n: int = 2) -> Workspace:
    source = tmp_path / "cohort"
    source.mkdir()
    lines = ["path,subject"]
    for i in range(n):
        _small_nifti(source / f"img{i}.nii.gz", value=i + 1)
        lines.append(f"img{i}.nii.gz,s{i}")
    (source / "manifest.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.resolve(tmp_path / "ws")
    catalog = Catalog.for_workspace(ws, create=True)
    try:
        assert import_manifest(catalog, source).added == n
    finally:
        catalog.close()
    return ws


def test_convert_into_an_unwritable_store_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    ws = _workspace_with_series(tmp_path)
    ws.store_dir.write_text("a file where the store folder belongs (works as root too)")
    done = _kneescope(tmp_path, ["convert", "-w", str(ws.root), "-j", "1"])
    assert done.returncode != 0
    line = _one_error_line(done.stderr)
    assert str(ws.store_dir) in line and "File exists" in line and "nothing was converted" in line


def test_convert_with_a_failed_series_exits_nonzero_naming_it(tmp_path: Path) -> None:
    ws = _workspace_with_series(tmp_path)
    (tmp_path / "cohort" / "img1.nii.gz").write_bytes(b"not a nifti any more")
    done = _kneescope(tmp_path, ["convert", "-w", str(ws.root), "-j", "1"])
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert "1 of 2 series failed to convert" in line and "img1.nii.gz" in line
    assert "converted 1" in done.stdout


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not psutil.pid_exists(child.pid)
    return child.pid


def test_convert_removes_temporaries_left_by_killed_runs(tmp_path: Path) -> None:
    ws = _workspace_with_series(tmp_path)
    group = ws.store_dir / "s0" / "no-visit"
    group.mkdir(parents=True)
    stale = group / f".bilateral.tmp-{_dead_pid()}-0123abcd"
    (stale / "c").mkdir(parents=True)
    (stale / "c" / "0").write_bytes(b"half a chunk")
    live = ws.store_dir / f".other.tmp-{os.getpid()}-89abcdef"
    live.mkdir()
    an_hour_ago = time.time() - 3600
    for path in (stale, live):
        os.utime(path, (an_hour_ago, an_hour_ago))
    catalog = Catalog.for_workspace(ws, create=False)
    try:
        report = convert_catalog(catalog, ws.store_dir, jobs=1)
    finally:
        catalog.close()
    assert report.converted == 2
    assert not stale.exists()
    assert live.exists()  # a running process's temporary is never touched


def _as_a_terminal_foreground_job() -> None:
    """SIGINT as a command started from a terminal has it: default action, not blocked.

    The test process may pass SIGINT on ignored or blocked: the suite started in the
    background through scripts/test.sh gave a convert that never saw the Ctrl-C (exit 0).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_during_convert_says_interrupted(tmp_path: Path) -> None:
    ws = _workspace_with_series(tmp_path, n=6)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kneescope", "convert", "-w", str(ws.root), "-j", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
        preexec_fn=_as_a_terminal_foreground_job,
    )
    try:
        deadline = time.monotonic() + 120
        while not psutil.Process(proc.pid).children() and proc.poll() is None:
            assert time.monotonic() < deadline, "convert started no workers"
            time.sleep(0.02)
        assert proc.poll() is None, "convert finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip() == "interrupted; rerun to resume", stderr[-2000:]


def test_export_to_a_missing_folder_or_an_existing_file_is_refused(tmp_path: Path) -> None:
    ws = _workspace_with_series(tmp_path, n=1)
    target = tmp_path / "nonexistent" / "dir" / "x.nii.gz"
    done = _kneescope(tmp_path, ["export", "1", "-w", str(ws.root), "-o", str(target)])
    assert done.returncode == 2
    assert "create it first" in _one_error_line(done.stderr)
    assert not (tmp_path / "nonexistent").exists()
    existing = tmp_path / "x.nii.gz"
    existing.write_bytes(b"keep me")
    done = _kneescope(tmp_path, ["export", "1", "-w", str(ws.root), "-o", str(existing)])
    assert done.returncode == 2
    assert "--overwrite" in _one_error_line(done.stderr)
    assert existing.read_bytes() == b"keep me"
    done = _kneescope(
        tmp_path, ["export", "1", "-w", str(ws.root), "-o", str(existing), "--overwrite"]
    )
    assert done.returncode == 0, done.stderr
    assert nib.load(existing).shape == (8, 9, 10)


@pytest.mark.slow
def test_ctrl_c_during_segment_says_interrupted(tmp_path: Path) -> None:
    model = save_model(_tiny_model(), tmp_path / "tiny.pt")
    rng = np.random.default_rng(0)
    inputs = []
    for i in range(6):
        array = (rng.random((40, 40, 40)) * 100).astype(np.float32)
        inputs.append(str(write_nifti(Volume(array, AFFINE), tmp_path / f"knee{i}.nii.gz")))
    out = tmp_path / "out"
    options = ["--model", str(model), "--out", str(out), "--side", "right", "--device", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kneescope", "segment", *inputs, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*.nii.gz")) and proc.poll() is None:
            assert time.monotonic() < deadline, "segment wrote nothing"
            time.sleep(0.05)
        assert proc.poll() is None, "segment finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "interrupted; rerun to resume", stderr[-2000:]
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_ctrl_c_during_parallel_ingest_says_interrupted(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    synth = ["synth", "--out", str(cohort), "-n", "3", "--visits", "V00", "--size", "small"]
    assert _kneescope(tmp_path, [*synth, "--no-xray"], timeout=300).returncode == 0
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kneescope",
            "ingest",
            str(cohort),
            "-w",
            str(tmp_path / "ws"),
            "--jobs",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
        preexec_fn=_as_a_terminal_foreground_job,
    )
    try:
        deadline = time.monotonic() + 120
        while not psutil.Process(proc.pid).children() and proc.poll() is None:
            assert time.monotonic() < deadline, "ingest started no workers"
            time.sleep(0.02)
        assert proc.poll() is None, "ingest finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip() == "interrupted; rerun to resume", stderr[-2000:]


def test_fifo_as_an_item_list_or_a_sides_table_is_refused_not_read(tmp_path: Path) -> None:
    """A run's item list and training's ``sides.csv`` are user tables too."""
    items = tmp_path / "items.csv"
    os.mkfifo(items)
    folder = tmp_path / "data"
    folder.mkdir()
    os.mkfifo(folder / "sides.csv")
    outcome = _python(
        f"""
        from pathlib import Path
        from kneescope.cohort.item_sources import _csv_items
        from kneescope.capabilities.segmentation.training_data import sides_in_folder
        calls = (
            lambda: list(_csv_items(Path({str(items)!r}), Path({str(tmp_path)!r}))),
            lambda: sides_in_folder(Path({str(folder)!r})),
        )
        for call in calls:
            try:
                call()
                print("OK")
            except BaseException as exc:
                print(f"{{type(exc).__name__}}: {{exc}}")
        """,
        timeout=60,
    )
    lines = outcome.splitlines()[:2]
    assert len(lines) == 2, outcome
    for line in lines:
        assert line.startswith("InputError:") and "named pipe" in line, line
