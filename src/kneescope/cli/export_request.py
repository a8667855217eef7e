"""What ``kneescope export`` was asked: one frozen record handed to each format's handler.

``cmd_export`` parses the options and dispatches on ``--format``: ``nifti``/``nrrd`` (one
series or its label map, geometry exact), ``dicom-seg`` (a DICOM Segmentation referencing the
source series: cli/export_dicom_seg.py), ``dicom-sr`` (a run's biomarkers of the series as a
DICOM SR measurement report: cli/export_dicom_sr.py), ``slicer`` (image + ``.seg.nrrd`` with
segment names and colours, loadable in one step in 3D Slicer and ITK-SNAP:
cli/export_slicer.py) and ``nnunet`` (an nnU-Net v2 raw dataset from the catalog's image/label
pairs: cli/export_nnunet.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kneescope.workspace import Workspace


@dataclass(frozen=True)
class ExportRequest:
    """The parsed options of one ``kneescope export`` call.

    Attributes:
        series: catalog id or SeriesInstanceUID (None only for ``nnunet``).
        fmt: ``nifti``, ``nrrd``, ``dicom-seg``, ``dicom-sr``, ``slicer`` or ``nnunet``.
        out: ``--output`` (a file or folder, by format), or None for the default under
            ``WS/exports/``.
        labels: export the catalog's label map of the series instead of the image.
        run: take the label map that this run's segmentation wrote for the series.
        dataset_id: nnU-Net dataset id (1-999) for ``nnunet``.
        overwrite: replace existing outputs.
        as_json: print JSON instead of a sentence.
        workspace: the workspace.
    """

    series: str | None
    fmt: str
    out: Path | None
    labels: bool
    run: str | None
    dataset_id: int | None
    overwrite: bool
    as_json: bool
    workspace: Workspace
