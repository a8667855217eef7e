"""Readers and writers: DICOM series and radiographs, NIfTI, MHA/MHD/NRRD, Zarr; atomic writes.

Heavy format libraries (SimpleITK, zarr) are imported inside the functions that need them.
"""

from kneescope.io.atomic import atomic_write_dir, atomic_write_path
from kneescope.io.dicom_series import DicomSeriesInfo, read_dicom_series, scan_dicom_series
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series

__all__ = [
    "DicomSeriesInfo",
    "DicomWriteMeta",
    "atomic_write_dir",
    "atomic_write_path",
    "read_dicom_series",
    "scan_dicom_series",
    "write_dicom_series",
]
