"""Import a generic folder of NIfTI/MHA/NRRD images (or DICOM folders) listed in a CSV manifest.

Manifest columns (case-insensitive; ``,``, ``|``, ``;`` or tab separated):

=============  =========================================================================
``path``       image file or DICOM series folder, relative to the manifest (required)
``subject``    subject code (required; also ``subject_id``, ``ID``)
``visit``      visit code (``V00``, ``1``...); optional
``side``       ``right``/``left`` (``R``, ``L``, ``1``, ``2``); optional
``sequence``   e.g. ``DESS``; optional
``label_path`` label map on the image's grid; optional (also ``label``, ``labels``)
``modality``   e.g. ``MR``; optional.  ``kind``: ``mri``/``radiograph``; optional
=============  =========================================================================

Images may also find their label map in a ``labels/`` folder next to the manifest (see
:mod:`kneescope.catalog.labels`). Like the OAI importer, a re-run skips unchanged files and a
bad row's image is recorded as failed with a one-line reason; a malformed manifest (missing
columns, ragged rows) is refused before anything is written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kneescope.catalog.database import Catalog
from kneescope.catalog.fingerprint import files_fingerprint, header_fingerprint
from kneescope.catalog.identity import MovedSeries, relativize_paths
from kneescope.catalog.labels import LABELS_FOLDER, attach_label, find_label, index_label_folder
from kneescope.catalog.naming import kind_of, normalize_visit, side_from_text
from kneescope.catalog.report import IngestReport
from kneescope.catalog.rows import RowWriter
from kneescope.catalog.schema import (
    KIND_MRI,
    KIND_RADIOGRAPH,
    KIND_UNKNOWN,
    STATUS_FAILED,
    STATUS_OK,
    Series,
)
from kneescope.catalog.series_scan import scan_series_folder
from kneescope.catalog.tables import Table, read_table
from kneescope.catalog.volumes import read_image_file
from kneescope.errors import InputError, KneescopeError
from kneescope.io.guards import require_regular_file

log = logging.getLogger(__name__)

MANIFEST_NAMES = ("manifest.csv", "manifest.tsv", "manifest.txt")
PATH_COLUMNS = ("path", "image", "image_path", "file")
SUBJECT_COLUMNS = ("subject", "subject_id", "ID", "ParticipantID")
LABEL_COLUMNS = ("label_path", "label", "labels", "seg", "segmentation")


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row, resolved: absolute paths, normalised visit and side."""

    line: int
    path: Path
    subject: str
    visit: str | None
    side: str | None
    sequence: str | None
    modality: str | None
    kind: str | None
    label_path: Path | None
    problem: str | None = None
    """Why the row cannot be cataloged as given (its image is then recorded as failed)."""


def find_manifest(source: Path) -> Path:
    """The manifest file: ``source`` itself, or a ``manifest.csv`` inside the folder.

    Raises:
        InputError: no manifest found.
    """
    if source.exists() and not source.is_dir():
        require_regular_file(source, what="manifest")  # never block on a FIFO
        return source
    for name in MANIFEST_NAMES:
        if (source / name).exists():
            require_regular_file(source / name, what="manifest")
            return source / name
    raise InputError(
        f"{source}: no manifest ({', '.join(MANIFEST_NAMES)}) found; give the CSV file "
        "with columns path, subject[, visit, side, sequence, label_path]"
    )


def parse_manifest(table: Table) -> list[ManifestRow]:
    """Resolve every row of a manifest table (paths relative to the manifest's folder).

    Raises:
        InputError: no path or subject column, or a path listed twice.
    """
    base = table.path.absolute().parent
    path_col = table.column(*PATH_COLUMNS)
    subject_col = table.column(*SUBJECT_COLUMNS)
    if path_col is None or subject_col is None:
        raise InputError(
            f"{table.path}: a manifest needs columns 'path' and 'subject'; "
            f"found {', '.join(table.columns)}"
        )
    cols = {
        "visit": table.column("visit", "visit_code", "timepoint"),
        "side": table.column("side", "knee", "laterality"),
        "sequence": table.column("sequence", "series_description", "protocol"),
        "modality": table.column("modality"),
        "kind": table.column("kind"),
        "label": table.column(*LABEL_COLUMNS),
    }
    rows: list[ManifestRow] = []
    seen: dict[Path, int] = {}
    for line, raw in enumerate(table.rows, start=2):

        def cell(name: str, raw: tuple[str, ...] = raw) -> str:
            index = cols[name]
            return raw[index] if index is not None else ""

        if not raw[path_col]:
            raise InputError(f"{table.path}, line {line}: empty path")
        path = (base / raw[path_col]).absolute()
        if path in seen:
            raise InputError(
                f"{table.path}, line {line}: {raw[path_col]} is listed again (line "
                f"{seen[path]}); list each image once"
            )
        seen[path] = line
        problems = []
        subject = raw[subject_col]
        if not subject:
            problems.append("empty subject")
        visit: str | None = None
        if cell("visit"):
            try:
                visit = normalize_visit(cell("visit"))
            except ValueError as exc:
                problems.append(str(exc))
        side = side_from_text(cell("side")) if cell("side") else None
        if cell("side") and side is None:
            problems.append(f"side {cell('side')!r} is not right or left")
        kind = cell("kind").lower() or None
        if kind not in (None, KIND_MRI, KIND_RADIOGRAPH):
            problems.append(f"kind {kind!r} is not mri or radiograph")
        label = cell("label")
        rows.append(
            ManifestRow(
                line=line,
                path=path,
                subject=subject or "unknown",
                visit=visit,
                side=side,
                sequence=cell("sequence").upper() or None,
                modality=cell("modality").upper() or None,
                kind=kind,
                label_path=(base / label).absolute() if label else None,
                problem=f"{table.path.name}, line {line}: {'; '.join(problems)}"
                if problems
                else None,
            )
        )
    return rows


def scan_image(row: ManifestRow) -> dict[str, Any]:
    """Series column values from an image file (read whole) or a DICOM series folder.

    Raises:
        KneescopeError: the image cannot be read.
    """
    if row.path.is_dir():
        values = scan_series_folder(row.path, None)
        values.pop("side")
        return values
    volume = read_image_file(row.path)
    shape = list(volume.shape)
    spacing = [float(s) for s in volume.spacing_mm]
    affine = [[float(v) for v in r] for r in volume.affine_ras]
    return {
        "n_files": 1,
        "shape": shape,
        "spacing_mm": spacing,
        "affine_ras": affine,
        "orientation": volume.orientation,
        "dtype": str(volume.array.dtype),
        "header_checksum": header_fingerprint(
            {"shape": shape, "spacing": spacing, "affine": affine, "dtype": str(volume.array.dtype)}
        ),
        "status": STATUS_OK,
    }


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, KneescopeError) else f"{type(exc).__name__}: {text}"


def import_manifest(catalog: Catalog, source: Path) -> IngestReport:
    """Ingest (or re-ingest) the images listed in a manifest; never stops on a bad image.

    Raises:
        InputError: no manifest, or a malformed one (nothing is written then).
    """
    start = time.perf_counter()
    manifest = find_manifest(source.absolute())
    rows = parse_manifest(read_table(manifest))
    report = IngestReport(kind="manifest", source=str(manifest))
    conventional = index_label_folder(manifest.parent / LABELS_FOLDER)
    ingest_rows(catalog, rows, manifest.parent, conventional, report)
    report.seconds = time.perf_counter() - start
    return report


def ingest_rows(
    catalog: Catalog,
    rows: list[ManifestRow],
    root: Path,
    conventional: dict[str, Path],
    report: IngestReport,
) -> None:
    """Catalog ``rows`` (relative paths relative to ``root``) in one transaction, counting
    into ``report``: what the manifest importer and the nnU-Net dataset importer share.
    ``conventional``: label maps found by name in a ``labels/`` folder ({} for none)."""
    keys = {row.path: catalog.stored(row.path) for row in rows}
    with catalog.session() as session:
        relativize_paths(session, catalog.root)
        writer = RowWriter(session, cohort=None)
        moved = MovedSeries(session, catalog.root, set(keys.values()))
        for row in rows:
            _ingest_row(
                session, writer, row, keys[row.path], catalog.root, moved, root,
                conventional, report,
            )  # fmt: skip


def _ingest_row(
    session: Session,
    writer: RowWriter,
    row: ManifestRow,
    key: str,
    workspace: Path | None,
    moved: MovedSeries,
    root: Path,
    conventional: dict[str, Path],
    report: IngestReport,
) -> None:
    """Ingest one manifest row; ``key`` is its stored path, ``workspace`` the catalog's root."""
    reason = row.problem
    try:
        fingerprint = files_fingerprint(row.path)
    except InputError as exc:
        fingerprint = "unreadable"
        reason = reason or _one_line(exc)
    existing = session.scalar(select(Series).where(Series.path == key))
    was_moved = False
    if existing is None and reason is None:
        moved_id = moved.match(row.path, fingerprint=fingerprint)
        existing = session.get(Series, moved_id) if moved_id is not None else None
        if existing is not None:
            log.info("moved %s -> %s (series %s)", existing.path, key, existing.id)
            existing.path = key
            session.flush()
            report.moved += 1
            was_moved = True
    if existing is not None and existing.files_checksum == fingerprint and reason is None:
        report.unchanged += 0 if was_moved else 1
        series = existing
    else:
        values: dict[str, Any] = {}
        if reason is None:
            try:
                values = scan_image(row)
            except Exception as exc:  # a bad image must never stop the ingest
                reason = _one_line(exc)
        if reason is not None:
            log.info("failed %s: %s", row.path, reason)
            values = {"status": STATUS_FAILED, "reason": reason}
            report.failed += 1
            report.failures.append((str(row.path), reason))
        subject = writer.subject(row.subject)
        visit = writer.visit(subject, row.visit) if row.visit else None
        sequence = row.sequence or values.pop("sequence", None)
        modality = row.modality or values.pop("modality", None)
        kind = row.kind or values.pop("kind", None) or kind_of(sequence, modality)
        if kind == KIND_UNKNOWN and values.get("shape"):
            kind = KIND_RADIOGRAPH if len(values["shape"]) == 2 else KIND_MRI
        values.pop("sequence", None)
        values.pop("modality", None)
        values.pop("kind", None)
        row_id = None
        if existing is None and values.get("series_uid"):
            row_id = moved.match(row.path, uid=str(values["series_uid"]))
        series = writer.upsert_series(
            key,
            row_id=row_id,
            source="manifest",
            subject_id=subject.id,
            visit_id=visit.id if visit else None,
            knee_id=writer.knee(subject, row.side).id if row.side else None,
            sequence=sequence,
            modality=modality or ("MR" if kind == KIND_MRI else None),
            kind=kind,
            files_checksum=fingerprint,
            **values,
        )
        if row_id is not None:
            report.moved += 1
        elif existing is None:
            report.added += 1
        else:
            report.updated += 1
    if series.status != STATUS_OK:
        return
    label_path = row.label_path
    if label_path is None:
        label_path = find_label(str(row.path), series.series_uid, root, conventional)
    if label_path is None:
        return
    try:
        # a savepoint: a label map that cannot be read (corrupt, huge, a FIFO, any error)
        # fails only itself; the image row and the rest of the ingest are kept
        with session.begin_nested():
            attached = attach_label(session, series, label_path, scheme="kneescope", root=workspace)
        if attached:
            report.labels += 1
    except Exception as exc:
        log.info("label map failed %s: %s", label_path, _one_line(exc))
        report.failures.append((str(label_path), _one_line(exc)))
