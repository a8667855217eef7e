"""Import an OAI-style DICOM tree into the catalog, incrementally.

Layout: ``<root>/<release>/<ParticipantID>/<StudyDate>/<series>/<slice files>``, e.g.
``0.C.2/9000099/20040909/10219306/001``; ``root`` may also be one release folder. Release
folders give the visit (:data:`~kneescope.core.oai_layout.RELEASE_TO_VISIT`), each release's
``contents.csv`` (when present) the SeriesDescription; headers fill in the rest. A series
folder with one file is a radiograph.

A re-run skips every series whose files (names, sizes, mtimes) are unchanged, so an
unchanged tree costs one ``stat`` per file. Series are keyed by their workspace-relative path
(see :mod:`kneescope.catalog.identity`), so a moved workspace re-ingests nothing, and a series
moved elsewhere keeps its id. A series that cannot be read is recorded as
failed with a one-line reason and the import carries on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from kneescope.catalog.database import Catalog
from kneescope.catalog.fingerprint import files_fingerprint
from kneescope.catalog.identity import MovedSeries, relativize_paths
from kneescope.catalog.labels import (
    LABELS_FOLDER,
    attach_label,
    find_label,
    index_label_folder,
    recorded_labels,
)
from kneescope.catalog.naming import (
    PARTICIPANT_RE,
    STUDY_DATE_RE,
    parse_series_description,
    visit_from_release,
)
from kneescope.catalog.report import IngestReport
from kneescope.catalog.rows import RowWriter
from kneescope.catalog.schema import (
    STATUS_FAILED,
    STATUS_OK,
    Series,
)
from kneescope.catalog.series_scan import ContentsRow, one_line, scan_many
from kneescope.catalog.tables import read_table
from kneescope.core.oai_layout import RELEASE_TO_VISIT
from kneescope.errors import InputError, KneescopeError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each series."""

_COMMIT_EVERY = 200


@dataclass(frozen=True)
class OaiSeriesFolder:
    """One series folder found in an OAI tree, with what its path says."""

    path: Path
    release: str
    visit: str
    participant: str
    study_date: str

    @property
    def key(self) -> tuple[str, str, str]:
        """(ParticipantID, StudyDate, series folder name): how contents.csv names it."""
        return (self.participant, self.study_date, self.path.name)


def _subdirs(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return sorted(
                Path(e.path)
                for e in entries
                if e.is_dir(follow_symlinks=True) and not e.name.startswith(".")
            )
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc.strerror)
        return []


def release_folders(root: Path) -> list[Path]:
    """The release folders of an OAI tree (``root`` itself when it is one).

    Raises:
        InputError: ``root`` is not a readable folder or holds no release folder.
    """
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give the root of an OAI-style tree")
    if visit_from_release(root.name):
        return [root]
    found = [d for d in _subdirs(root) if visit_from_release(d.name)]
    if not found:
        names = ", ".join(list(RELEASE_TO_VISIT)[:4])
        raise InputError(
            f"{root}: no OAI release folders ({names}, ...) found; give the tree's root "
            "or use --kind manifest for a folder of NIfTI/MHA files"
        )
    return found


def discover_series(root: Path) -> tuple[list[OaiSeriesFolder], list[Path]]:
    """Every series folder of the tree, and the folders that fit no level of the layout."""
    found: list[OaiSeriesFolder] = []
    ignored: list[Path] = []
    for release in release_folders(root):
        visit = visit_from_release(release.name) or ""
        for participant in _subdirs(release):
            if not PARTICIPANT_RE.match(participant.name):
                if participant.name != LABELS_FOLDER:
                    ignored.append(participant)
                continue
            for date in _subdirs(participant):
                if not STUDY_DATE_RE.match(date.name):
                    ignored.append(date)
                    continue
                for series in _subdirs(date):
                    found.append(
                        OaiSeriesFolder(series, release.name, visit, participant.name, date.name)
                    )
    return found, ignored


def read_contents(release: Path, report: IngestReport) -> dict[tuple[str, str, str], ContentsRow]:
    """A release's ``contents.csv`` keyed by (ParticipantID, StudyDate, series folder name).

    A missing file gives an empty dict; an unreadable one a warning in ``report``.
    """
    path = release / "contents.csv"
    if not path.is_file():
        return {}
    try:
        table = read_table(path)
    except InputError as exc:
        report.warnings.append(f"ignored {path}: {exc}")
        return {}
    folder_col = table.column("Folder")
    if folder_col is None:
        report.warnings.append(f"ignored {path}: no Folder column")
        return {}
    pid_col = table.column("ParticipantID")
    date_col = table.column("StudyDate")
    barcode_col = table.column("Barcode")
    study_col = table.column("StudyDescription")
    series_col = table.column("SeriesDescription")
    out: dict[tuple[str, str, str], ContentsRow] = {}
    for row in table.rows:
        parts = [p for p in row[folder_col].replace("\\", "/").split("/") if p]
        if len(parts) < 3:
            continue
        pid = row[pid_col] if pid_col is not None and row[pid_col] else parts[-3]
        date = row[date_col] if date_col is not None and row[date_col] else parts[-2]
        out[(pid, date, parts[-1])] = ContentsRow(
            barcode=row[barcode_col] if barcode_col is not None else "",
            study_description=row[study_col] if study_col is not None else "",
            series_description=row[series_col] if series_col is not None else "",
        )
    return out


def import_oai_tree(
    catalog: Catalog, root: Path, *, jobs: int = 1, progress: ProgressFn | None = None
) -> IngestReport:
    """Ingest (or re-ingest) an OAI-style tree; never stops on a bad series.

    Unchanged series are skipped after one ``stat`` per file; the others have their headers
    read by ``jobs`` worker processes (1: in this process) and are written here.

    Raises:
        InputError: ``root`` is not an OAI-style tree (see :func:`release_folders`).
    """
    start = time.perf_counter()
    root = Path(os.path.normpath(root.absolute()))
    report = IngestReport(kind="oai", source=str(root))
    folders, ignored = discover_series(root)
    report.ignored = len(ignored)
    for path in ignored:
        log.info("ignored %s: not part of the OAI layout", path)
    tree_root = root.parent if visit_from_release(root.name) else root  # labels/ lives here
    labels = index_label_folder(tree_root / LABELS_FOLDER)
    keys = {folder.path: catalog.stored(folder.path) for folder in folders}
    with catalog.session() as session:
        relativize_paths(session, catalog.root)
        known: dict[str, tuple[int, str, str, str | None]] = {
            path: (series_id, checksum, status, uid)
            for path, series_id, checksum, status, uid in session.execute(
                select(
                    Series.path, Series.id, Series.files_checksum, Series.status, Series.series_uid
                ).where(_below(catalog.stored(root)))
            )
        }
        recorded = recorded_labels(session, catalog.root) if labels else {}
    contents: dict[str, dict[tuple[str, str, str], ContentsRow]] = {}
    todo: list[_Pending] = []
    with catalog.session() as session:
        moved = MovedSeries(session, catalog.root, set(keys.values()))
        for folder in folders:
            try:
                fingerprint = files_fingerprint(folder.path)
                reason: str | None = None
            except InputError as exc:
                fingerprint, reason = "unreadable", one_line(exc)
            key = keys[folder.path]
            old = known.get(key)
            if old is None and reason is None:
                old = _adopt_moved(session, moved, folder.path, key, fingerprint, known)
                if old is not None:
                    report.moved += 1
            elif old is not None and old[1] == fingerprint:
                report.unchanged += 1
            if old is None or old[1] != fingerprint:
                if folder.release not in contents:
                    contents[folder.release] = read_contents(folder.path.parents[2], report)
                hint = contents[folder.release].get(folder.key)
                todo.append(_Pending(folder, hint, fingerprint, reason, old is not None))
                continue
            series_id, _, status, uid = old
            label = find_label(str(folder.path), uid, tree_root, labels) if labels else None
            if (
                status == STATUS_OK
                and label is not None
                and not _label_recorded(label, series_id, recorded)
            ):
                row = session.get(Series, series_id)
                if row is not None:
                    _attach(session, row, label, catalog.root, report)
    if progress:
        progress(report.unchanged + report.moved, len(folders))
    readable = [(p.folder.path, p.hint) for p in todo if p.reason is None]
    scans = scan_many(readable, jobs)
    skipped = report.unchanged + report.moved
    with catalog.session() as session:
        writer = RowWriter(session, cohort="oai")
        moved = MovedSeries(session, catalog.root, set(keys.values()))
        for done, pending in enumerate(todo, start=1):
            values, reason = (None, pending.reason) if pending.reason else next(scans)
            row_id = None
            if not pending.existed and values is not None and values.get("series_uid"):
                row_id = moved.match(pending.folder.path, uid=str(values["series_uid"]))
                adopted = session.get(Series, row_id) if row_id is not None else None
                if adopted is not None:
                    known.pop(adopted.path, None)  # moved, not missing
            row = _write_series(
                writer, keys[pending.folder.path], pending, values, reason, report, row_id
            )
            if pending.existed:
                report.updated += 1
            elif row_id is not None:
                report.moved += 1
            else:
                report.added += 1
            if row.status == STATUS_OK and labels:
                label = find_label(str(pending.folder.path), row.series_uid, tree_root, labels)
                if label is not None:
                    _attach(session, row, label, catalog.root, report)
            if done % _COMMIT_EVERY == 0:
                session.commit()
            if progress:
                progress(skipped + done, len(folders))
    _mark_missing(catalog, known, set(keys.values()), report)
    report.seconds = time.perf_counter() - start
    return report


def _below(stored_root: str) -> ColumnElement[bool]:
    """SQL condition: a stored series path lies strictly below the stored path ``stored_root``
    (``.``: the workspace root itself, i.e. any relative path)."""
    if stored_root == ".":
        return ~Series.path.startswith("/")
    return Series.path.startswith(stored_root.rstrip("/") + "/", autoescape=True)


def _adopt_moved(
    session: Session,
    moved: MovedSeries,
    path: Path,
    key: str,
    fingerprint: str,
    known: dict[str, tuple[int, str, str, str | None]],
) -> tuple[int, str, str, str | None] | None:
    """The catalog entry of a known series whose files (same fingerprint) moved to ``path``,
    now recorded at ``key``; None when ``path`` holds a series new to the catalog."""
    row_id = moved.match(path, fingerprint=fingerprint)
    row = session.get(Series, row_id) if row_id is not None else None
    if row is None:
        return None
    known.pop(row.path, None)  # its old path is not missing: it moved
    log.info("moved %s -> %s (series %s)", row.path, key, row.id)
    row.path = key
    session.flush()
    entry = (row.id, row.files_checksum, row.status, row.series_uid)
    known[key] = entry
    return entry


def _mark_missing(
    catalog: Catalog,
    known: dict[str, tuple[int, str, str, str | None]],
    found: set[str],
    report: IngestReport,
) -> None:
    """Mark ok series below the ingested root whose folder no longer exists as failed.

    ``known`` holds the stored paths below the root, ``found`` those seen by this ingest.
    """
    gone = [
        (path, entry[0])
        for path, entry in known.items()
        if path not in found and entry[2] == STATUS_OK and not _exists(catalog, path)
    ]
    if not gone:
        return
    with catalog.session() as session:
        for path, series_id in gone:
            row = session.get(Series, series_id)
            if row is None:
                continue
            row.status = STATUS_FAILED
            row.reason = "series folder no longer exists; restore it and re-run the ingest"
            row.files_checksum = "missing"
            report.missing += 1
            report.failures.append((str(_real(catalog, path)), row.reason))


def _real(catalog: Catalog, stored: str) -> Path:
    """The real path of a stored one (the stored text itself when it cannot be resolved)."""
    try:
        return catalog.resolve(stored)
    except InputError:
        return Path(stored)


def _exists(catalog: Catalog, stored: str) -> bool:
    return os.path.lexists(_real(catalog, stored))


@dataclass(frozen=True)
class _Pending:
    """A series folder that is new or changed since the last ingest."""

    folder: OaiSeriesFolder
    hint: ContentsRow | None
    fingerprint: str
    reason: str | None
    existed: bool


def _label_recorded(label: Path, series_id: int, recorded: dict[str, tuple[int, str]]) -> bool:
    """True when ``label`` is recorded for ``series_id`` with its current fingerprint."""
    entry = recorded.get(os.path.normpath(label.absolute()))
    if entry is None or entry[0] != series_id:
        return False
    try:
        return entry[1] == files_fingerprint(label)
    except InputError:
        return False


def _write_series(
    writer: RowWriter,
    key: str,
    pending: _Pending,
    values: dict[str, Any] | None,
    reason: str | None,
    report: IngestReport,
    row_id: int | None,
) -> Series:
    folder, hint = pending.folder, pending.hint
    if values is None:
        reason = reason or "unreadable series"
        log.info("failed %s: %s", folder.path, reason)
        name = parse_series_description(hint.series_description if hint else None)
        values = {
            "kind": name.kind,
            "sequence": name.sequence,
            "plane": name.plane,
            "side": name.side,
            "description": hint.series_description if hint else None,
            "status": STATUS_FAILED,
            "reason": reason,
        }
        report.failed += 1
        report.failures.append((str(folder.path), reason))
    values = dict(values)
    subject = writer.subject(folder.participant)
    visit = writer.visit(subject, folder.visit, folder.study_date)
    side = values.pop("side")
    return writer.upsert_series(
        key,
        row_id=row_id,
        source="oai",
        subject_id=subject.id,
        visit_id=visit.id,
        knee_id=writer.knee(subject, side).id if side else None,
        files_checksum=pending.fingerprint,
        **values,
    )


def _attach(
    session: Session, row: Series, label: Path, root: Path | None, report: IngestReport
) -> None:
    try:
        if attach_label(session, row, label, scheme="kneescope", root=root):
            report.labels += 1
    except KneescopeError as exc:
        report.failures.append((str(label), one_line(exc)))
