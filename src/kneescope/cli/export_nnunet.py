"""``kneescope export --format nnunet`` (being built for issue 18; see cli/export_request.py)."""

from __future__ import annotations

from kneescope.cli.export_request import ExportRequest
from kneescope.errors import InputError


def export_nnunet(request: ExportRequest) -> None:
    """Export as asked in ``request``."""
    raise InputError("--format nnunet is not available in this build yet")
