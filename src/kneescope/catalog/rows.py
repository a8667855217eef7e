"""Write helpers shared by the importers: get-or-create subjects, visits, knees; upsert series.

:class:`RowWriter` caches looked-up rows for the length of one session, so an ingest of
thousands of series issues one query per new entity, not per series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from kneescope.catalog.schema import Knee, Series, Subject, Visit, utc_now

_CHUNK = 2000
"""Values per ``IN (...)`` query (well below SQLite's and PostgreSQL's parameter limits)."""


@dataclass
class RowWriter:
    """Get-or-create access to subjects, visits and knees within one session."""

    session: Session
    cohort: str | None = None
    _subjects: dict[str, Subject] = field(default_factory=dict)
    _visits: dict[tuple[int, str], Visit] = field(default_factory=dict)
    _knees: dict[tuple[int, str], Knee] = field(default_factory=dict)

    def subject(self, code: str) -> Subject:
        """The subject with ``code``, created when missing."""
        row = self._subjects.get(code)
        if row is None:
            row = self.session.scalar(select(Subject).where(Subject.code == code))
            if row is None:
                row = Subject(code=code, cohort=self.cohort)
                self.session.add(row)
                self.session.flush()
            self._subjects[code] = row
        return row

    def subject_ids(self, codes: set[str]) -> dict[str, int]:
        """Ids of the subjects with ``codes``, creating the missing ones in bulk."""
        ids: dict[str, int] = {}
        ordered = sorted(codes)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            ids.update(
                {
                    code: subject_id
                    for code, subject_id in self.session.execute(
                        select(Subject.code, Subject.id).where(Subject.code.in_(chunk))
                    )
                }
            )
        missing = [code for code in ordered if code not in ids]
        if missing:
            self.session.execute(
                insert(Subject), [{"code": code, "cohort": self.cohort} for code in missing]
            )
            for start in range(0, len(missing), _CHUNK):
                chunk = missing[start : start + _CHUNK]
                ids.update(
                    {
                        code: subject_id
                        for code, subject_id in self.session.execute(
                            select(Subject.code, Subject.id).where(Subject.code.in_(chunk))
                        )
                    }
                )
        return ids

    def visit(self, subject: Subject, code: str, study_date: str | None = None) -> Visit:
        """The visit ``code`` of ``subject``, created when missing; fills a missing date."""
        key = (subject.id, code)
        row = self._visits.get(key)
        if row is None:
            row = self.session.scalar(
                select(Visit).where(Visit.subject_id == subject.id, Visit.code == code)
            )
            if row is None:
                row = Visit(subject_id=subject.id, code=code, study_date=study_date)
                self.session.add(row)
                self.session.flush()
            self._visits[key] = row
        if study_date and not row.study_date:
            row.study_date = study_date
        return row

    def knee(self, subject: Subject, side: str) -> Knee:
        """The ``side`` knee of ``subject``, created when missing."""
        key = (subject.id, side)
        row = self._knees.get(key)
        if row is None:
            row = self.session.scalar(
                select(Knee).where(Knee.subject_id == subject.id, Knee.side == side)
            )
            if row is None:
                row = Knee(subject_id=subject.id, side=side)
                self.session.add(row)
                self.session.flush()
            self._knees[key] = row
        return row

    def upsert_series(self, path: str, *, row_id: int | None = None, **values: Any) -> Series:
        """Insert the series at ``path`` or overwrite every given column of the existing row.

        ``path`` is the stored form (workspace-relative inside the workspace). ``row_id``
        names the existing row of a series that moved to ``path`` (its id is kept).
        Columns not given are reset to their defaults, so a re-ingested series never keeps
        stale facts (e.g. a failure reason after it was fixed).
        """
        row = (
            self.session.get(Series, row_id)
            if row_id is not None
            else self.session.scalar(select(Series).where(Series.path == path))
        )
        defaults: dict[str, Any] = {
            "subject_id": None,
            "visit_id": None,
            "knee_id": None,
            "modality": None,
            "sequence": None,
            "plane": None,
            "description": None,
            "series_uid": None,
            "study_uid": None,
            "n_files": 0,
            "shape": None,
            "spacing_mm": None,
            "affine_ras": None,
            "orientation": None,
            "dtype": None,
            "header_checksum": None,
            "reason": None,
        }
        merged = {**defaults, **values, "path": path, "ingested_at": utc_now()}
        if row is None:
            row = Series(**merged)
            self.session.add(row)
        else:
            for key, value in merged.items():
                setattr(row, key, value)
        self.session.flush()
        return row
