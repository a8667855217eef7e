"""An OAI-style DICOM tree written with pydicom directly, with known geometry and content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


@dataclass(frozen=True)
class SeriesTruth:
    """What the test wrote: array[i, j, k] (i = column, j = row) and its RAS affine."""

    folder: Path
    array: np.ndarray
    affine_ras: np.ndarray
    uid: str


def _base(
    sop_class: str, patient: str, date: str, series_uid: str, description: str
) -> tuple[FileMetaDataset, Dataset]:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.99.{patient}.{date}"
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient
    ds.PatientName = "TEST^KNEE"
    ds.StudyDate = date
    ds.SeriesDescription = description
    ds.StudyDescription = "OAI^MR^ENROLLMENT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return meta, ds


def write_mr_series(
    folder: Path,
    *,
    patient: str,
    date: str,
    description: str,
    n_slices: int = 8,
    rows: int = 24,
    cols: int = 32,
    seed: int = 0,
) -> SeriesTruth:
    """Write an oblique MR series (files named 001.. in reverse slice order) with pydicom."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    angle = 0.3 + 0.1 * seed
    col_dir = np.array([0.0, np.cos(angle), -np.sin(angle)])  # first IOP vector (along a row)
    row_dir = np.array([0.0, np.sin(angle), np.cos(angle)])  # second IOP vector (down a column)
    normal = np.cross(col_dir, row_dir)
    spacing_row, spacing_col, spacing_slice = 0.36, 0.42, 0.7
    origin = np.array([-30.5, 12.25, 40.0])
    uid = f"1.2.826.0.1.3680043.99.{patient}.{date}.{seed}.{len(description)}"
    volume = rng.integers(0, 4000, size=(cols, rows, n_slices), dtype=np.uint16)
    for k in range(n_slices):
        _, ds = _base(MR_STORAGE, patient, date, uid, description)
        ds.Modality = "MR"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [spacing_row, spacing_col]
        ds.SliceThickness = spacing_slice
        ds.ImageOrientationPatient = [*col_dir.tolist(), *row_dir.tolist()]
        ds.ImagePositionPatient = (origin + k * spacing_slice * normal).tolist()
        ds.InstanceNumber = k + 1
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T).tobytes()
        ds.save_as(folder / f"{n_slices - k:03d}", enforce_file_format=True)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = col_dir * spacing_col
    affine_lps[:3, 1] = row_dir * spacing_row
    affine_lps[:3, 2] = normal * spacing_slice
    affine_lps[:3, 3] = origin
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    return SeriesTruth(folder, volume, affine_ras, uid)


def write_radiograph(folder: Path, *, patient: str, date: str) -> Path:
    """Write one CR file (PA fixed-flexion knee, 40x64, ImagerPixelSpacing 0.2 mm)."""
    folder.mkdir(parents=True, exist_ok=True)
    _, ds = _base(CR_STORAGE, patient, date, f"1.2.826.0.1.3680043.99.{patient}.77", "")
    ds.SeriesDescription = "Bilateral PA Fixed Flexion Knee"
    ds.StudyDescription = "OAI^XR^ENROLLMENT"
    ds.Modality = "CR"
    ds.Rows, ds.Columns = 40, 64
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.PatientOrientation = ["L", "F"]
    ds.PixelData = np.arange(40 * 64, dtype=np.uint16).tobytes()
    path = folder / "001"
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass(frozen=True)
class OaiTree:
    root: Path
    good: dict[str, SeriesTruth]
    radiograph: Path
    truncated: Path
    not_dicom: Path


CONTENTS = """Folder,ParticipantID,StudyDate,Barcode,StudyDescription,SeriesDescription
0.C.2/9000099/20040909/10219306,9000099,20040909,01234,OAI^MR^ENROLLMENT^RIGHT,SAG_3D_DESS_RIGHT
0.C.2/9000099/20040909/10219307,9000099,20040909,01235,OAI^MR^ENROLLMENT^LEFT,COR_IW_TSE_LEFT
0.C.2/9000296/20041001/10300001,9000296,20041001,01236,OAI^MR^ENROLLMENT^LEFT,SAG_3D_DESS_LEFT
"""


def build_oai_tree(root: Path) -> OaiTree:
    """Two releases, two participants: 4 good MR series, 1 radiograph, 2 bad series."""
    v00, v01 = root / "0.C.2", root / "1.C.2"
    good = {
        "dess_v00": write_mr_series(
            v00 / "9000099/20040909/10219306",
            patient="9000099",
            date="20040909",
            description="SAG_3D_DESS_RIGHT",
            seed=0,
        ),
        "tse_v00": write_mr_series(
            v00 / "9000099/20040909/10219307",
            patient="9000099",
            date="20040909",
            description="COR_IW_TSE_LEFT",
            n_slices=5,
            seed=1,
        ),
        "dess_v01": write_mr_series(
            v01 / "9000099/20050915/11000001",
            patient="9000099",
            date="20050915",
            description="SAG_3D_DESS_RIGHT",
            seed=2,
        ),
        "dess_left": write_mr_series(
            v00 / "9000296/20041001/10300002",
            patient="9000296",
            date="20041001",
            description="SAG_3D_DESS_LEFT",
            seed=3,
        ),
    }
    (good["dess_v00"].folder / "stray_subfolder").mkdir()  # OAI quirk: must be ignored
    (v00 / "contents.csv").write_text(CONTENTS, encoding="utf-8")
    radiograph = write_radiograph(
        v00 / "9000099/20040909/10219400", patient="9000099", date="20040909"
    )
    truncated = write_mr_series(
        v00 / "9000296/20041001/10300001",
        patient="9000296",
        date="20041001",
        description="SAG_3D_DESS_LEFT",
        seed=4,
    ).folder
    data = (truncated / "003").read_bytes()
    (truncated / "003").write_bytes(data[: len(data) // 2])
    not_dicom = v01 / "9000296/20051010/11000009"
    not_dicom.mkdir(parents=True)
    (not_dicom / "001").write_text("this is not a DICOM file\n", encoding="utf-8")
    (v00 / "notes").mkdir()  # fits no level of the layout: ignored
    return OaiTree(root, good, radiograph, truncated, not_dicom)
