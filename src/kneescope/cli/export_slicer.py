"""``kneescope export --format slicer`` (being built for issue 18; see cli/export_request.py)."""

from __future__ import annotations

from kneescope.cli.export_request import ExportRequest
from kneescope.errors import InputError


def export_slicer(request: ExportRequest) -> None:
    """Export as asked in ``request``."""
    raise InputError("--format slicer is not available in this build yet")
