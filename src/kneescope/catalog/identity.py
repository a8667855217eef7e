"""Series identity that does not depend on where a workspace or a tree lies.

A series is the row with its stored path (workspace-relative inside the workspace, see
:func:`kneescope.workspace.to_stored`), so a copied or moved workspace finds every series at
the same key and a re-ingest skips it. When a series turns up at a path the catalog does not
know, the importers ask :class:`MovedSeries` whether it is a known series that moved: a row
whose recorded path is gone (or is an old absolute path of a copied workspace, see
:func:`moved_from`) and that has the same files fingerprint (names, sizes, mtimes) or, for
DICOM, the same SeriesInstanceUID. That row is kept - same id, same store entry, same run
items - and only its path changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kneescope.catalog.schema import LabelMap, Series
from kneescope.errors import InputError
from kneescope.workspace import from_stored, to_stored

_CHUNK = 2000
"""Values per ``IN (...)`` query."""

NO_IDENTITY = frozenset({"unreadable", "missing"})
"""Placeholder fingerprints that say nothing about a series' identity."""


def moved_from(old_stored: str, new_path: Path, root: Path | None) -> bool:
    """True when the entry recorded as ``old_stored`` may be the thing now at ``new_path``.

    Either the recorded path is gone, or it is an absolute path (written before paths were
    stored relative) ending in the same parts as ``new_path`` relative to the workspace
    ``root``: the entry came along with a copied workspace whose original still exists.
    """
    try:
        old = from_stored(old_stored, root)
    except InputError:
        return True
    if not os.path.lexists(old):
        return True
    if root is None or not Path(old_stored).is_absolute():
        return False
    rel = Path(to_stored(new_path, root))
    if rel.is_absolute() or not rel.parts or rel.parts == (".",):
        return False
    return old != new_path and old.parts[-len(rel.parts) :] == rel.parts


@dataclass(frozen=True)
class _Known:
    id: int
    path: str
    files_checksum: str
    series_uid: str | None


class MovedSeries:
    """Known series that a new path may be a moved copy of (loaded on first use).

    ``found`` holds the stored paths seen by the running ingest: their rows are where they
    were and are never taken for another path.
    """

    def __init__(self, session: Session, root: Path | None, found: set[str]) -> None:
        self._session = session
        self._root = root
        self._found = found
        self._by_fingerprint: dict[str, list[_Known]] | None = None
        self._by_uid: dict[str, list[_Known]] = {}
        self._taken: set[int] = set()

    def _load(self) -> dict[str, list[_Known]]:
        """Known series not seen by this ingest, by fingerprint (and by UID in ``_by_uid``)."""
        if self._by_fingerprint is None:
            self._by_fingerprint = {}
            for row in self._session.execute(
                select(Series.id, Series.path, Series.files_checksum, Series.series_uid).order_by(
                    Series.id
                )
            ):
                if row[1] in self._found:
                    continue
                known = _Known(*row)
                self._by_fingerprint.setdefault(known.files_checksum, []).append(known)
                if known.series_uid:
                    self._by_uid.setdefault(known.series_uid, []).append(known)
        return self._by_fingerprint

    def match(
        self, new_path: Path, *, fingerprint: str | None = None, uid: str | None = None
    ) -> int | None:
        """Id of the known series that ``new_path`` is a moved copy of, or None.

        Matches by files fingerprint (when given and meaningful) or by SeriesInstanceUID.
        A matched row is not offered again in this ingest.
        """
        by_fingerprint = self._load()
        candidates: list[_Known] = []
        if fingerprint and fingerprint not in NO_IDENTITY:
            candidates += by_fingerprint.get(fingerprint, [])
        if uid:
            candidates += self._by_uid.get(uid, [])
        for row in candidates:
            if row.id not in self._taken and moved_from(row.path, new_path, self._root):
                self._taken.add(row.id)
                return row.id
        return None


def relativize_paths(session: Session, root: Path | None) -> int:
    """Rewrite absolute series and label-map paths inside the workspace ``root`` as relative
    ones (catalogs written before paths were stored relative); returns how many changed.

    A path whose relative form is already taken by another row is left as it is.
    """
    if root is None:
        return 0
    prefix = os.path.normpath(root.absolute()).rstrip("/") + "/"
    changed = 0
    for model in (Series, LabelMap):
        rows = session.execute(
            select(model.id, model.path).where(model.path.startswith(prefix, autoescape=True))
        ).all()
        if not rows:
            continue
        wanted = {row_id: to_stored(Path(path), root) for row_id, path in rows}
        values = sorted(set(wanted.values()))
        taken: set[str] = set()
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            taken.update(session.scalars(select(model.path).where(model.path.in_(chunk))))
        for row_id, new in wanted.items():
            if new in taken:
                continue
            session.execute(update(model).where(model.id == row_id).values(path=new))
            taken.add(new)
            changed += 1
    if changed:
        session.flush()
    return changed
