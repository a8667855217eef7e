"""One unit of cohort work: a knee series (subject, visit, side, series) and its input file.

The driver fingerprints each item's input (``input_checksum``) so that a re-run can tell
unchanged items from changed ones. Items travel to workers, so they stay small and picklable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from kneescope.errors import InputError
from kneescope.io.guards import require_regular_file

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Item:
    """One cohort item.

    Attributes:
        item_id: unique id within a run (e.g. the catalog series uid).
        subject: subject id ("" when unknown).
        visit: visit label such as "V00" ("" when unknown).
        side: "right", "left" or "" when unknown.
        series: series id or description ("" when unknown).
        path: input file or folder, absolute; None for items without a file.
        input_checksum: fingerprint of the input (sha256 hex prefix); "" when not yet computed.
        labels_path: the label map attached to the item (catalog items: the series' label map
            in the catalog), absolute; None when it has none.
        from_catalog: the item is a catalog series: ``path`` is its image, and its label map
            (if any) is ``labels_path``. For items from files, ``path`` is the one input.
    """

    item_id: str
    subject: str = ""
    visit: str = ""
    side: str = ""
    series: str = ""
    path: str | None = None
    input_checksum: str = ""
    labels_path: str | None = None
    from_catalog: bool = False


def file_checksum(path: Path) -> str:
    """sha256 (first 32 hex digits) of a file's bytes, or of a folder's files in name order.

    Raises:
        InputError: the path does not exist or cannot be read.
    """
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(str(child.relative_to(path)).encode())
                _update_from_file(digest, child)
        else:
            _update_from_file(digest, path)
    except OSError as exc:
        raise InputError(
            f"cannot read item input {path}: {exc.strerror}; fix the path or drop the item"
        ) from None
    return digest.hexdigest()[:32]


def _update_from_file(digest: hashlib._Hash, path: Path) -> None:
    if path.exists():  # a FIFO would block the run for ever (a missing file: OSError below)
        require_regular_file(path, what="item input")
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
