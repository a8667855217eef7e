"""Readers and writers: DICOM series and radiographs, NIfTI, MHA/MHD/NRRD, Zarr; atomic writes.

SimpleITK and zarr are imported inside the functions that need them, nibabel likewise.
"""

from kneescope.io.atomic import atomic_write_dir, atomic_write_path
from kneescope.io.dicom_radiograph import (
    DicomFileInfo,
    read_dicom_radiograph,
    scan_dicom_file,
    write_dicom_radiograph,
)
from kneescope.io.dicom_series import DicomSeriesInfo, read_dicom_series, scan_dicom_series
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series
from kneescope.io.itk_formats import read_itk, write_itk
from kneescope.io.nifti import read_nifti, write_nifti
from kneescope.io.readers import check_image_file, read_volume, write_volume
from kneescope.io.zarr_store import (
    StoreLayout,
    VolumeStore,
    WriteStats,
    read_zarr_volume,
    write_zarr_volume,
)

__all__ = [
    "DicomFileInfo",
    "DicomSeriesInfo",
    "DicomWriteMeta",
    "StoreLayout",
    "VolumeStore",
    "WriteStats",
    "atomic_write_dir",
    "atomic_write_path",
    "check_image_file",
    "read_dicom_radiograph",
    "read_dicom_series",
    "read_itk",
    "read_nifti",
    "read_volume",
    "read_zarr_volume",
    "scan_dicom_file",
    "scan_dicom_series",
    "write_dicom_radiograph",
    "write_dicom_series",
    "write_itk",
    "write_nifti",
    "write_volume",
    "write_zarr_volume",
]
