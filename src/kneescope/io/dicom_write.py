"""Writing valid DICOM files with pydicom: series metadata, shared modules, the series writer.

Files are MR Image Storage (series) or CR Image Storage (radiographs), Explicit VR Little
Endian, with every type 1 and type 2 attribute of their IOD present (checked with
``dciodvfy`` from Debian's dicom3tools). UIDs derive deterministically from
:attr:`DicomWriteMeta.uid_seed`, and no clock is read, so the same input gives the same bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from kneescope.config import FROZEN
from kneescope.core.volume import Volume
from kneescope.errors import GeometryError, InputError
from kneescope.io.atomic import atomic_write_dir

logger = logging.getLogger(__name__)

UID_ROOT = "1.2.826.0.1.3680043.8.498."
"""pydicom's UID root (public, for generated UIDs)."""

IMPLEMENTATION_VERSION = "KNEESCOPE_01"


class DicomWriteMeta(BaseModel):
    """What a written DICOM series or radiograph says about itself.

    Attributes:
        patient_id: PatientID (PatientName is ``KNEESCOPE^<patient_id>``).
        study_date: ``YYYYMMDD``.
        study_time: ``HHMMSS`` (fixed, so output is deterministic).
        study_description: e.g. ``"OAI^MR^ENROLLMENT^RIGHT"``.
        series_description: e.g. ``"SAG_3D_DESS_RIGHT"``.
        series_number: SeriesNumber.
        laterality: ``"right"``/``"left"`` written as (0020,0060) ``R``/``L``; None: empty.
        modality: ``"MR"`` for series; radiographs use ``"CR"``/``"DX"``.
        body_part: BodyPartExamined.
        manufacturer: Manufacturer.
        uid_seed: seed of the series and instance UIDs (same seed, same UIDs).
        study_uid_seed: seed of StudyInstanceUID and FrameOfReferenceUID; defaults to
            patient_id + study_date + study_description, so that series of one visit share
            their study.
    """

    model_config = FROZEN

    patient_id: str = Field(min_length=1, max_length=64)
    study_date: str = Field(pattern=r"^\d{8}$")
    study_time: str = Field(default="120000", pattern=r"^\d{6}$")
    study_description: str = Field(default="", max_length=64)
    series_description: str = Field(default="", max_length=64)
    series_number: int = Field(default=1, ge=0, le=2**31 - 1)
    laterality: Literal["right", "left"] | None = None
    modality: str = Field(default="MR", pattern=r"^[A-Z]{2,16}$")
    body_part: str = Field(default="KNEE", max_length=16)
    manufacturer: str = Field(default="kneescope", max_length=64)
    uid_seed: str = Field(min_length=1)
    study_uid_seed: str | None = None

    def study_seed(self) -> str:
        if self.study_uid_seed is not None:
            return self.study_uid_seed
        return f"{self.patient_id}|{self.study_date}|{self.study_description}"


def make_uid(*parts: str) -> str:
    """A deterministic UID under :data:`UID_ROOT` from ``parts``."""
    return str(generate_uid(prefix=UID_ROOT, entropy_srcs=list(parts)))


def ds_values(values: npt.ArrayLike) -> list[str]:
    """Numbers formatted as DICOM DS strings (<= 16 characters, maximal precision)."""
    out = []
    for v in np.asarray(values, dtype=np.float64).reshape(-1):
        value = 0.0 if abs(float(v)) < 1e-14 else float(v)
        out.append(format_number_as_ds(value))
    return out


def base_dataset(meta: DicomWriteMeta, sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """A dataset with file meta, SOP common, patient, study, series and equipment modules."""
    ds = Dataset()
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = UID(sop_class_uid)
    fm.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = UID(UID_ROOT + "1")
    fm.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    # patient
    ds.PatientName = f"KNEESCOPE^{meta.patient_id}"
    ds.PatientID = meta.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # general study
    ds.StudyInstanceUID = make_uid("study", meta.study_seed())
    ds.StudyDate = meta.study_date
    ds.StudyTime = meta.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = meta.study_description
    # general series
    ds.Modality = meta.modality
    ds.SeriesInstanceUID = make_uid("series", meta.uid_seed, str(meta.series_number))
    ds.SeriesNumber = meta.series_number
    ds.SeriesDescription = meta.series_description
    ds.Laterality = {"right": "R", "left": "L", None: ""}[meta.laterality]
    ds.BodyPartExamined = meta.body_part
    ds.SeriesDate = meta.study_date
    ds.SeriesTime = meta.study_time
    # general equipment
    ds.Manufacturer = meta.manufacturer
    # general image
    ds.ContentDate = meta.study_date
    ds.ContentTime = meta.study_time
    return ds


def set_pixels(ds: Dataset, pixels: npt.NDArray[Any], photometric: str) -> None:
    """Image Pixel module for a 2D uint16/int16 array of shape (Rows, Columns)."""
    if pixels.dtype not in (np.dtype(np.uint16), np.dtype(np.int16)):
        raise InputError(f"DICOM pixels must be uint16 or int16, got {pixels.dtype}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW"


def as_dicom_integers(array: npt.NDArray[Any], what: str) -> npt.NDArray[Any]:
    """``array`` as uint16 (if its values fit) or int16; refuse floats and out-of-range data."""
    if array.dtype.kind not in "biu":
        raise InputError(
            f"{what}: DICOM output needs integer data (uint16/int16), got {array.dtype}; "
            "round and cast the volume first"
        )
    lo, hi = int(array.min()), int(array.max())
    if lo >= 0 and hi <= 65535:
        return array.astype(np.uint16, copy=False)
    if lo >= -32768 and hi <= 32767:
        return array.astype(np.int16, copy=False)
    raise InputError(f"{what}: values {lo}..{hi} fit neither uint16 nor int16")


def _series_geometry(
    volume: Volume, folder: Path
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], tuple[float, float, float]]:
    """(ImageOrientationPatient as 6 numbers, unit normal, (col, row, slice) spacing in mm)."""
    a = volume.affine_lps
    r, c, s = a[:3, 0], a[:3, 1], a[:3, 2]
    col_sp, row_sp, slice_sp = (float(np.linalg.norm(v)) for v in (r, c, s))
    rd, cd, sd = r / col_sp, c / row_sp, s / slice_sp
    if abs(float(np.dot(rd, cd))) > 1e-6:
        raise GeometryError(
            f"{folder}: DICOM needs orthogonal in-plane axes; axes i and j of the affine meet at "
            f"{np.degrees(np.arccos(np.clip(np.dot(rd, cd), -1, 1))):.4f} degrees"
        )
    normal = np.cross(rd, cd)
    if float(np.linalg.norm(np.cross(normal, sd))) > 1e-6:
        raise GeometryError(
            f"{folder}: DICOM series need the slice axis k perpendicular to the slices; the "
            "affine is sheared; resample the volume first"
        )
    return np.concatenate([rd, cd]), normal, (col_sp, row_sp, slice_sp)


def write_dicom_series(volume: Volume, folder: Path, *, meta: DicomWriteMeta) -> list[Path]:
    """Write a 3D Volume as an MR DICOM series, one file per slice (``001``, ``002``, ...).

    Slice ``k`` of ``volume.array[i, j, k]`` becomes file ``k + 1`` with Rows = J and Columns
    = I (see :mod:`kneescope.io.dicom_series` for the convention). The folder is written
    atomically: it appears complete or not at all (an existing folder is replaced).

    Args:
        volume: 3D integer Volume whose values fit uint16 or int16; in-plane axes orthogonal
            and the slice axis perpendicular to them.
        folder: the series folder to create.
        meta: header values and UID seed.

    Returns:
        The written file paths in slice order.

    Raises:
        InputError: not 3D, non-integer or out-of-range data, more than 9999 slices.
        GeometryError: the affine cannot be expressed as a DICOM series.
    """
    folder = Path(folder)
    if volume.ndim != 3:
        raise InputError(f"{folder}: a DICOM series needs a 3D volume, got shape {volume.shape}")
    n_i, n_j, n_k = volume.shape
    if n_k > 9999:
        raise InputError(f"{folder}: {n_k} slices; at most 9999 are supported")
    if n_i > 65535 or n_j > 65535:
        raise InputError(f"{folder}: slices of {n_i}x{n_j} exceed DICOM's 65535 rows/columns")
    data = as_dicom_integers(volume.array, str(folder))
    iop, normal, (col_sp, row_sp, slice_sp) = _series_geometry(volume, folder)
    affine_lps = volume.affine_lps
    width = max(3, len(str(n_k)))
    names = [f"{k + 1:0{width}d}" for k in range(n_k)]
    lo, hi = int(data.min()), int(data.max())
    with atomic_write_dir(folder) as tmp:
        for k in range(n_k):
            sop_uid = make_uid("instance", meta.uid_seed, str(meta.series_number), str(k))
            ds = base_dataset(meta, MRImageStorage, sop_uid)
            ds.ImageType = ["DERIVED", "PRIMARY", "OTHER"]
            ds.InstanceNumber = k + 1
            ds.PatientPosition = "FFS"
            ds.FrameOfReferenceUID = make_uid("frame", meta.study_seed())
            ds.PositionReferenceIndicator = ""
            position = affine_lps @ np.array([0.0, 0.0, float(k), 1.0])
            ds.ImagePositionPatient = ds_values(position[:3])
            ds.ImageOrientationPatient = ds_values(iop)
            ds.PixelSpacing = ds_values([row_sp, col_sp])
            ds.SliceThickness = ds_values([slice_sp])[0]
            ds.SpacingBetweenSlices = ds_values([slice_sp])[0]
            ds.SliceLocation = ds_values([float(position[:3] @ normal)])[0]
            # MR image module
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SS"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = ""
            ds.EchoTime = ""
            ds.EchoTrainLength = ""
            set_pixels(ds, np.ascontiguousarray(data[:, :, k].T), "MONOCHROME2")
            ds.WindowCenter = ds_values([(lo + hi) / 2.0])[0]
            ds.WindowWidth = ds_values([max(hi - lo, 1)])[0]
            ds.save_as(tmp / names[k], enforce_file_format=True)
    logger.debug("wrote %d DICOM slices to %s", n_k, folder)
    return [folder / name for name in names]
