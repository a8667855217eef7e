"""Readers and writers: DICOM series and radiographs, NIfTI, MHA/MHD/NRRD, Zarr; atomic writes."""
