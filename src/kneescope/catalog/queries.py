"""Read the catalog: list and filter series, find one series, summarise counts.

Results are plain frozen records (:class:`SeriesRecord`), detached from any session, so they
can be printed, sent to worker processes or turned into JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from kneescope.catalog.database import Catalog
from kneescope.catalog.naming import (
    MRI_SEQUENCES,
    RADIOGRAPH_SEQUENCES,
    normalize_visit,
    side_from_text,
)
from kneescope.catalog.schema import (
    KIND_MRI,
    KIND_RADIOGRAPH,
    KIND_UNKNOWN,
    STATUS_FAILED,
    STATUS_OK,
    ClinicalValue,
    Knee,
    LabelMap,
    Series,
    StoreEntry,
    Subject,
    Visit,
)
from kneescope.config import FROZEN
from kneescope.errors import InputError, NotFoundError

STATUSES = (STATUS_OK, STATUS_FAILED)
"""Every series status the catalog records."""
KINDS = (KIND_MRI, KIND_RADIOGRAPH, KIND_UNKNOWN)
"""Every series kind the catalog records."""
KNOWN_SEQUENCES = tuple(sorted(MRI_SEQUENCES | RADIOGRAPH_SEQUENCES))
"""Sequence names the OAI importer assigns (a manifest may add its own)."""
KNOWN_MODALITIES = ("CR", "CT", "DR", "DX", "MR", "OT", "RG")
"""DICOM modalities of knee imaging (others are valid when the catalog holds them)."""


class SeriesFilter(BaseModel):
    """Filters for :func:`list_series`; ``None`` means any. Text matches ignore case."""

    model_config = FROZEN

    subject: str | None = None
    visit: str | None = None
    side: str | None = None
    sequence: str | None = None
    status: str | None = None
    modality: str | None = None
    kind: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class SeriesRecord:
    """One catalog series as plain values (see :class:`~kneescope.catalog.schema.Series`).

    ``path`` and ``label_paths`` are real absolute paths: workspace-relative ones are resolved
    against the workspace of the catalog they were read from.
    """

    id: int
    path: str
    source: str
    subject: str | None
    visit: str | None
    side: str | None
    kind: str
    modality: str | None
    sequence: str | None
    plane: str | None
    description: str | None
    series_uid: str | None
    n_files: int
    shape: tuple[int, ...] | None
    spacing_mm: tuple[float, ...] | None
    orientation: str | None
    dtype: str | None
    files_checksum: str
    header_checksum: str | None
    status: str
    reason: str | None
    ingested_at: datetime
    label_paths: tuple[str, ...]
    store_key: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists, datetimes ISO strings)."""
        data = asdict(self)
        data["ingested_at"] = self.ingested_at.isoformat()
        return data


_SeriesSelect = Select[Series, str, str, str, str]


def _select_series() -> _SeriesSelect:
    return (
        select(Series, Subject.code, Visit.code, Knee.side, StoreEntry.store_key)
        .outerjoin(Subject, Series.subject_id == Subject.id)
        .outerjoin(Visit, Series.visit_id == Visit.id)
        .outerjoin(Knee, Series.knee_id == Knee.id)
        .outerjoin(StoreEntry, StoreEntry.series_id == Series.id)
    )


def _records(catalog: Catalog, session: Session, stmt: _SeriesSelect) -> list[SeriesRecord]:
    rows = session.execute(stmt).all()
    ids = [row[0].id for row in rows]
    labels: dict[int, list[str]] = {}
    if ids:
        for series_id, path in session.execute(
            select(LabelMap.series_id, LabelMap.path)
            .where(LabelMap.series_id.in_(ids))
            .order_by(LabelMap.id)
        ):
            labels.setdefault(series_id, []).append(str(catalog.resolve(path)))
    out = []
    for series, subject, visit, side, store_key in rows:
        out.append(
            SeriesRecord(
                id=series.id,
                path=str(catalog.resolve(series.path)),
                source=series.source,
                subject=subject,
                visit=visit,
                side=side,
                kind=series.kind,
                modality=series.modality,
                sequence=series.sequence,
                plane=series.plane,
                description=series.description,
                series_uid=series.series_uid,
                n_files=series.n_files,
                shape=tuple(int(n) for n in series.shape) if series.shape else None,
                spacing_mm=tuple(float(s) for s in series.spacing_mm)
                if series.spacing_mm
                else None,
                orientation=series.orientation,
                dtype=series.dtype,
                files_checksum=series.files_checksum,
                header_checksum=series.header_checksum,
                status=series.status,
                reason=series.reason,
                ingested_at=series.ingested_at,
                label_paths=tuple(labels.get(series.id, ())),
                store_key=store_key,
            )
        )
    return out


def _check_choice(option: str, value: str, valid: tuple[str, ...]) -> None:
    if value.lower() not in {v.lower() for v in valid}:
        raise InputError(f"{option} {value!r} is not one of {', '.join(valid)}")


def _check_open_vocabulary(
    session: Session, option: str, value: str, column: Any, known: tuple[str, ...]
) -> None:
    """Refuse a value that is neither known nor in the catalog (a typo gives no silent empty
    table); a known value absent from the catalog is fine (an empty answer is true then)."""
    if value.upper() in {k.upper() for k in known}:
        return
    present = sorted(
        str(v) for v in session.scalars(select(column).where(column.is_not(None)).distinct())
    )
    if value.upper() in {v.upper() for v in present}:
        return
    others = sorted(set(known) - set(present))
    raise InputError(
        f"{option} {value!r} is not in the catalog; it holds {', '.join(present) or 'none'}"
        + (f" (also valid: {', '.join(others)})" if others else "")
    )


def check_series_filter(catalog: Catalog, where: SeriesFilter) -> None:
    """Refuse filter values that can match nothing because they are not values at all.

    ``status`` and ``kind`` must be one of :data:`STATUSES`/:data:`KINDS`; ``sequence`` and
    ``modality`` a known name (:data:`KNOWN_SEQUENCES`, :data:`KNOWN_MODALITIES`) or one that
    the catalog holds.

    Raises:
        InputError: one line naming the valid values.
    """
    if where.status:
        _check_choice("--status", where.status, STATUSES)
    if where.kind:
        _check_choice("--kind", where.kind, KINDS)
    if where.sequence or where.modality:
        with catalog.session() as session:
            if where.sequence:
                _check_open_vocabulary(
                    session, "--sequence", where.sequence, Series.sequence, KNOWN_SEQUENCES
                )
            if where.modality:
                _check_open_vocabulary(
                    session, "--modality", where.modality, Series.modality, KNOWN_MODALITIES
                )


def list_series(catalog: Catalog, where: SeriesFilter | None = None) -> list[SeriesRecord]:
    """Series matching every given filter, ordered by subject, visit, sequence, id.

    Raises:
        InputError: a visit or side filter is not a valid code, or a status, kind, sequence
            or modality that is no value (see :func:`check_series_filter`).
    """
    where = where or SeriesFilter()
    check_series_filter(catalog, where)
    stmt = _select_series()
    if where.subject:
        stmt = stmt.where(Subject.code == where.subject)
    if where.visit:
        stmt = stmt.where(Visit.code == _visit_code(where.visit))
    if where.side:
        stmt = stmt.where(Knee.side == _side_code(where.side))
    if where.sequence:
        stmt = stmt.where(func.upper(Series.sequence) == where.sequence.upper())
    if where.status:
        stmt = stmt.where(Series.status == where.status.lower())
    if where.modality:
        stmt = stmt.where(func.upper(Series.modality) == where.modality.upper())
    if where.kind:
        stmt = stmt.where(Series.kind == where.kind.lower())
    stmt = stmt.order_by(Subject.code, Visit.code, Series.sequence, Series.id)
    if where.limit is not None:
        stmt = stmt.limit(where.limit)
    with catalog.session() as session:
        return _records(catalog, session, stmt)


def label_map_checksums(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """Every cataloged label map: real path -> (path as stored, files checksum).

    The stored path is workspace-relative where the catalog keeps it so, and goes into a
    run's input checksum: a moved workspace then does not re-run every item.
    """
    with catalog.session() as session:
        return {
            str(catalog.resolve(path)): (path, checksum)
            for path, checksum in session.execute(select(LabelMap.path, LabelMap.files_checksum))
        }


def get_series(catalog: Catalog, ref: str | int) -> SeriesRecord:
    """The series with catalog id ``ref`` (digits) or SeriesInstanceUID ``ref``.

    Raises:
        NotFoundError: no series has that id or UID (or the UID is ambiguous).
    """
    text = str(ref).strip()
    stmt = _select_series()
    if text.isdigit():
        stmt = stmt.where(Series.id == int(text))
    else:
        stmt = stmt.where(Series.series_uid == text)
    with catalog.session() as session:
        found = _records(catalog, session, stmt)
    if not found:
        raise NotFoundError(
            f"no series {text!r} in the catalog; list ids and UIDs with `kneescope catalog`"
        )
    if len(found) > 1:
        ids = ", ".join(str(r.id) for r in found)
        raise NotFoundError(f"series UID {text!r} matches several series ({ids}); give an id")
    return found[0]


@dataclass(frozen=True)
class CatalogSummary:
    """Counts over the whole catalog."""

    subjects: int
    visits: int
    knees: int
    series: int
    series_by_status: dict[str, int]
    series_by_kind: dict[str, int]
    series_by_sequence: dict[str, int]
    series_by_visit: dict[str, int]
    label_maps: int
    clinical_values: int
    store_entries: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(catalog: Catalog) -> CatalogSummary:
    """Entity counts and series counts by status, kind, sequence and visit."""
    with catalog.session() as session:

        def count(model: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

        def grouped(column: Any, *, join_visit: bool = False) -> dict[str, int]:
            stmt = select(column, func.count(Series.id)).select_from(Series)
            if join_visit:
                stmt = stmt.outerjoin(Visit, Series.visit_id == Visit.id)
            stmt = stmt.group_by(column)
            return {
                str(key) if key is not None else "-": int(n)
                for key, n in sorted(session.execute(stmt).all(), key=lambda r: str(r[0]))
            }

        return CatalogSummary(
            subjects=count(Subject),
            visits=count(Visit),
            knees=count(Knee),
            series=count(Series),
            series_by_status=grouped(Series.status),
            series_by_kind=grouped(Series.kind),
            series_by_sequence=grouped(Series.sequence),
            series_by_visit=grouped(Visit.code, join_visit=True),
            label_maps=count(LabelMap),
            clinical_values=count(ClinicalValue),
            store_entries=count(StoreEntry),
        )


class ClinicalFilter(BaseModel):
    """Filters for :func:`clinical_values`; ``None`` means any.

    ``variable`` is a name (``XRKL``) or a pattern with ``*`` and ``?`` (``WOMKP*``), case
    ignored; ``visit`` a visit code (``V00`` or ``0``; subject-level values have none);
    ``side`` right or left.
    """

    model_config = FROZEN

    subject: str | None = None
    visit: str | None = None
    side: str | None = None
    variable: str | None = None
    limit: int | None = None


def _like_pattern(glob: str) -> str:
    """SQL LIKE pattern (escape ``\\``) of a ``*``/``?`` glob, upper-cased."""
    out = []
    for char in glob.upper():
        if char in "%_\\":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def clinical_values(
    catalog: Catalog,
    where: ClinicalFilter | None = None,
    *,
    subject: str | None = None,
    variable: str | None = None,
) -> list[dict[str, Any]]:
    """Clinical values in long format as dicts (subject, visit, side, variable, value_text,
    value_num), ordered by subject, visit, side, variable.

    ``subject``/``variable`` keywords are shorthands for a :class:`ClinicalFilter`. A
    ``value_num`` that is not finite (written by an older kneescope) comes back as None.

    Raises:
        InputError: a visit or side filter is not a valid code.
    """
    where = where or ClinicalFilter(subject=subject, variable=variable)
    stmt = select(
        Subject.code,
        ClinicalValue.visit,
        ClinicalValue.side,
        ClinicalValue.variable,
        ClinicalValue.value_text,
        ClinicalValue.value_num,
    ).join(Subject, ClinicalValue.subject_id == Subject.id)
    if where.subject:
        stmt = stmt.where(Subject.code == where.subject)
    if where.visit:
        stmt = stmt.where(ClinicalValue.visit == _visit_code(where.visit))
    if where.side:
        stmt = stmt.where(ClinicalValue.side == _side_code(where.side))
    if where.variable:
        if any(c in where.variable for c in "*?"):
            pattern = _like_pattern(where.variable)
            stmt = stmt.where(func.upper(ClinicalValue.variable).like(pattern, escape="\\"))
        else:
            stmt = stmt.where(func.upper(ClinicalValue.variable) == where.variable.upper())
    stmt = stmt.order_by(
        Subject.code, ClinicalValue.visit, ClinicalValue.side, ClinicalValue.variable
    )
    if where.limit is not None:
        stmt = stmt.limit(where.limit)
    keys = ("subject", "visit", "side", "variable", "value_text", "value_num")
    with catalog.session() as session:
        result = session.execute(stmt).all()
    rows: list[dict[str, Any]] = []
    for *values, number in result:
        finite = number if number is None or math.isfinite(number) else None
        rows.append(dict(zip(keys, (*values, finite), strict=True)))
    return rows


def _visit_code(text: str) -> str:
    """A visit filter as the catalog stores it (``v0``, ``00`` -> ``V00``)."""
    try:
        return normalize_visit(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _side_code(text: str) -> str:
    """A side filter as the catalog stores it (``R``, ``Right`` -> ``right``)."""
    side = side_from_text(text)
    if side is None:
        raise InputError(f"side {text!r} is not right or left")
    return side
