"""One unit of cohort work: a knee series (subject, visit, side, series) and its input file,
or - for catalog selections with another ``unit`` - one knee of a bilateral radiograph, a
full-leg film, every series of a subject at a visit, or one knee across visits.

The driver fingerprints each item's input (``input_checksum``) so that a re-run can tell
unchanged items from changed ones; for an item of several series it covers every series the
item reads. Items travel to workers, so they stay small and picklable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from kneescope.errors import InputError
from kneescope.io.guards import require_regular_file

_CHUNK_BYTES = 1 << 20

UNITS = ("series", "radiograph_knee", "full_leg", "subject_visit", "knee_longitudinal")
"""What one item is (``ItemsConfig.unit``): a series (default); one knee of a bilateral PA knee
radiograph (two items per film, ``side`` set, both reading the same film); a full-leg film; all
series of a subject at one visit; one knee of a subject across its visits."""


@dataclass(frozen=True, slots=True)
class ItemPart:
    """One series read by an item made of several series (``subject_visit``,
    ``knee_longitudinal``).

    Attributes:
        series: the series' SeriesInstanceUID (its catalog id when it has none).
        path: the series' folder or file, absolute.
        visit: its visit code (``V00``).
        side: ``right``/``left``, or "" when the series shows both knees or no side is known.
        sequence: its sequence name (``DESS``, ``XR_PA``, ...), "" when unknown.
        kind: ``mri``, ``radiograph`` or ``unknown``.
        labels_path: the label map attached to the series, absolute; None when it has none.
    """

    series: str
    path: str
    visit: str = ""
    side: str = ""
    sequence: str = ""
    kind: str = ""
    labels_path: str | None = None


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
        unit: one of :data:`UNITS`. ``radiograph_knee``: ``path`` is the bilateral film and
            ``side`` the knee to read in it. ``full_leg``: ``path`` is the film.
            ``subject_visit`` (``side`` "") and ``knee_longitudinal`` (``visit`` ""):
            ``path`` is None and ``parts`` lists the series, in visit order.
        parts: the series of a multi-series item (empty for single-series units).
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
    unit: str = "series"
    parts: tuple[ItemPart, ...] = ()

    @property
    def visits(self) -> tuple[str, ...]:
        """The visits the item covers, in order (its own visit for single-series units)."""
        if not self.parts:
            return (self.visit,) if self.visit else ()
        return tuple(dict.fromkeys(p.visit for p in self.parts))

    @property
    def paths(self) -> tuple[str, ...]:
        """Every input path the item reads (series folders or files, absolute)."""
        if self.parts:
            return tuple(p.path for p in self.parts)
        return (self.path,) if self.path else ()


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
