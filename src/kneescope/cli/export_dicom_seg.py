"""``kneescope export --format dicom-seg`` (being built for issue 18; see cli/export_request.py)."""

from __future__ import annotations

from kneescope.cli.export_request import ExportRequest
from kneescope.errors import InputError


def export_dicom_seg(request: ExportRequest) -> None:
    """Export as asked in ``request``."""
    raise InputError("--format dicom-seg is not available in this build yet")
