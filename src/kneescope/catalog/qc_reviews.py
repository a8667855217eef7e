"""Reviewers' QC decisions in the catalog: import a decisions file, read the current decisions.

A reviewer marks knees in the cohort report (``kneescope report``) as ``accept``, ``reject``
or ``resegment`` and exports a decisions file (JSON, :data:`FORMAT` version
:data:`FORMAT_VERSION`)::

    {"format": "kneescope-qc-decisions", "version": 1, "run": "demo",
     "kneescope_version": "0.1.0", "reviewer": "A. Reader",
     "exported_at": "2026-12-01T14:03:00Z",
     "decisions": [{"item_id": "series-2", "subject": "9065429", "visit": "V00",
                    "side": "right", "series": "1.2.3", "decision": "reject",
                    "note": "cartilage leaks into fluid",
                    "decided_at": "2026-12-01T14:02:11Z"}]}

:func:`import_decisions` checks the whole file against the catalog (the run must be stored,
every item must be one of its items, identities must agree) and writes every decision in one
transaction, or nothing. Rows are only ever added: re-importing a file adds nothing (each
decision has a content key), and a later decision for the same knee supersedes an earlier one
while the history stays (:func:`list_reviews` with ``history``).

A decision is about a knee: the item's subject, visit, side and series (:func:`knee_key`; an
item without a series - a file-list item, a knee across visits - is known by its item id).
:func:`load_reviews` gives, for every reviewed knee, its current decision and the key of its
latest ``resegment`` decision: later runs (:mod:`kneescope.cohort.qc_honour`) and results
exports (``kneescope results``) read them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import insert, inspect, select

from kneescope.catalog.database import Catalog
from kneescope.catalog.schema import QcReview, ResultRun, ResultValue, utc_now
from kneescope.errors import InputError, NotFoundError

FORMAT = "kneescope-qc-decisions"
"""The ``format`` of a decisions file."""
FORMAT_VERSION = 1
"""The ``version`` of the decisions file format this kneescope reads (and the report writes)."""
DECISIONS = ("accept", "reject", "resegment")
"""What a reviewer may decide for a knee."""
REVIEW_COLUMNS = ("qc_review", "qc_reviewer", "qc_reviewed_at", "qc_review_note")
"""Columns results tables and exports gain from the reviews: the knee's current decision
(``accept``, ``reject``, ``resegment`` - not yet redone - or ``resegmented``: the row was
computed after the ``resegment`` decision was imported; ``""`` when not reviewed), who decided,
when (ISO 8601, UTC) and the reviewer's note."""
RESEGMENTED = "resegmented"

MAX_FILE_BYTES = 64 * 2**20
"""A decisions file larger than this (64 MiB, ~300,000 decisions) is refused unread."""

Decision = Literal["accept", "reject", "resegment"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class FileDecision(_Model):
    """One decision of a decisions file (see the module docstring)."""

    item_id: str = Field(min_length=1)
    subject: str = ""
    visit: str = ""
    side: str = ""
    series: str = ""
    decision: Decision
    note: str = ""
    decided_at: datetime

    @field_validator("subject", "visit", "side", "series", "note", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("decided_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _utc(value, "decided_at")


class DecisionsFile(_Model):
    """A decisions file as exported by the cohort report.

    Attributes:
        run: the reviewed run's name.
        reviewer: who decided (required: the report's reviewer field).
        exported_at: when the report exported the file (UTC), None when absent.
        kneescope_version: the version that wrote the report ("" when absent).
        decisions: the decisions, in file order.
    """

    format: str
    version: int
    run: str = Field(min_length=1)
    reviewer: str = Field(min_length=1)
    exported_at: datetime | None = None
    kneescope_version: str = ""
    decisions: tuple[FileDecision, ...] = Field(min_length=1)

    @field_validator("kneescope_version", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("exported_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value, "exported_at")


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} needs a time zone (e.g. 2026-12-01T14:02:11Z)")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class ReadFile:
    """A validated decisions file with where it came from."""

    path: Path
    digest: str
    """sha256 (hex) of the file's bytes."""
    content: DecisionsFile


def read_decisions_file(path: Path) -> ReadFile:
    """Read and validate a decisions file (format, version, fields; not yet the catalog).

    Raises:
        NotFoundError: no such file.
        InputError: not a regular file, too large, not UTF-8 JSON, another format or a newer
            version, or a field that is missing or wrong (the first one is named).
    """
    from kneescope.io.guards import require_regular_file

    if not path.exists():
        raise NotFoundError(f"decisions file {path} not found; export it from the cohort report")
    require_regular_file(path, what="decisions file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"{path} is {size / 2**20:.0f} MiB, more than a decisions file holds "
            f"({MAX_FILE_BYTES // 2**20} MiB at most); give the file the report exported"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(
            f"{path} is not UTF-8 text; give the JSON file the report exported"
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "give the file the report's 'Export decisions' button wrote"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"{path} is not a kneescope QC decisions file (format {found!r}, expected "
            f"{FORMAT!r}); export it with the cohort report's 'Export decisions' button"
        )
    version = data.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > 1
        fix = "upgrade kneescope" if newer else "export the decisions again from the report"
        raise InputError(
            f"{path}: decisions file version {version!r}; this kneescope reads version "
            f"{FORMAT_VERSION}; {fix}"
        )
    try:
        content = DecisionsFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(
            ".[", "["
        )
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        hint = (
            "; enter a reviewer name in the report and export again" if where == "reviewer" else ""
        )
        raise InputError(f"{path}: {where or '(top level)'}: {message}{more}{hint}") from None
    return ReadFile(path, hashlib.sha256(raw).hexdigest(), content)


_DICOM_UID = re.compile(r"[0-9]+(\.[0-9]+)+")


def knee_key(item_id: str, subject: str, visit: str, side: str, series: str) -> tuple[str, ...]:
    """What a decision is about: the knee's subject, visit, side and SeriesInstanceUID when
    the item names a DICOM series (so another run over the same series follows it), else the
    item id (``series-<catalog id>`` for a catalog series without a UID, whose ``series``
    column is its description: neither stable nor unique; a file-list item's own id)."""
    if series and _DICOM_UID.fullmatch(series):
        return ("series", subject or "", visit or "", side or "", series)
    return ("item", item_id)


@dataclass(frozen=True)
class Review:
    """One stored decision (a row of ``qc_reviews``); times are aware UTC."""

    id: int
    key: str
    run: str
    item_id: str
    subject: str
    visit: str
    side: str
    series: str
    decision: str
    note: str
    reviewer: str
    decided_at: datetime
    imported_at: datetime
    source_name: str
    source_digest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "item_id": self.item_id,
            "subject": self.subject,
            "visit": self.visit,
            "side": self.side,
            "series": self.series,
            "decision": self.decision,
            "note": self.note,
            "reviewer": self.reviewer,
            "decided_at": _iso(self.decided_at),
            "imported_at": _iso(self.imported_at),
            "source": self.source_name,
            "source_sha256": self.source_digest,
        }

    def columns(self, computed_at: datetime | None = None) -> dict[str, str]:
        """The :data:`REVIEW_COLUMNS` of a result row of this knee computed at
        ``computed_at`` (aware; None when unknown)."""
        state = self.decision
        if state == "resegment" and computed_at is not None and computed_at > self.imported_at:
            state = RESEGMENTED
        return {
            "qc_review": state,
            "qc_reviewer": self.reviewer,
            "qc_reviewed_at": _iso(self.decided_at),
            "qc_review_note": self.note,
        }


EMPTY_COLUMNS: Mapping[str, str] = dict.fromkeys(REVIEW_COLUMNS, "")
"""The :data:`REVIEW_COLUMNS` of a knee nobody reviewed."""


def _iso(moment: datetime) -> str:
    return _aware(moment).isoformat().replace("+00:00", "Z")


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes: they were written as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Reviews:
    """Every reviewed knee's current decision and latest ``resegment`` decision.

    Attributes:
        current: knee (:func:`knee_key`) -> its latest decision (by decision time, then
            import order).
        resegment: knee -> its latest ``resegment`` decision, whatever came after it (a
            later accept does not undo a redo that happened).
    """

    current: dict[tuple[str, ...], Review] = field(default_factory=dict)
    resegment: dict[tuple[str, ...], Review] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.current)

    def of(self, item_id: str, subject: str, visit: str, side: str, series: str) -> Review | None:
        """The current decision for an item's knee, None when nobody reviewed it."""
        if not self.current:
            return None
        return self.current.get(knee_key(item_id, subject, visit, side, series))

    def redo_token(self, item_id: str, subject: str, visit: str, side: str, series: str) -> str:
        """``""``, or the key of the knee's latest ``resegment`` decision: runs put it into
        the item's key, so each such decision re-runs the item once."""
        if not self.resegment:
            return ""
        found = self.resegment.get(knee_key(item_id, subject, visit, side, series))
        return "" if found is None else found.key

    def columns(
        self, row: Mapping[str, Any], computed_at: datetime | None = None
    ) -> dict[str, str]:
        """The :data:`REVIEW_COLUMNS` of a result row (item_id, subject, visit, side, series)."""
        review = self.of(
            str(row.get("item_id") or ""),
            str(row.get("subject") or ""),
            str(row.get("visit") or ""),
            str(row.get("side") or ""),
            str(row.get("series") or ""),
        )
        return dict(EMPTY_COLUMNS) if review is None else review.columns(computed_at)


_REVIEW_FIELDS = (
    "id",
    "key",
    "run",
    "item_id",
    "subject",
    "visit",
    "side",
    "series",
    "decision",
    "note",
    "reviewer",
    "decided_at",
    "imported_at",
    "source_name",
    "source_digest",
)
_TABLE = QcReview.metadata.tables[QcReview.__tablename__]


def _all_reviews(catalog: Catalog, run: str | None = None) -> list[Review]:
    """Every stored decision, oldest decision first (ties: import order); none when the
    catalog predates the ``qc_reviews`` table (opened without creating the schema)."""
    if not inspect(catalog.engine).has_table(QcReview.__tablename__):
        return []
    columns = [_TABLE.c[name] for name in _REVIEW_FIELDS]
    query = select(*columns).order_by(_TABLE.c.decided_at, _TABLE.c.id)
    if run is not None:
        query = query.where(_TABLE.c.run == run)
    with catalog.session() as session:  # rows, not ORM objects: a cohort may hold many
        rows = session.execute(query).all()
    # _REVIEW_FIELDS are Review's fields in order; the two times come back naive from SQLite
    return [
        Review(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
            _aware(r[11]), _aware(r[12]), r[13], r[14],
        )
        for r in rows
    ]  # fmt: skip


def reviews_from(rows: Iterable[Review]) -> Reviews:
    """:class:`Reviews` of decisions given oldest first."""
    current: dict[tuple[str, ...], Review] = {}
    resegment: dict[tuple[str, ...], Review] = {}
    for review in rows:
        knee = knee_key(review.item_id, review.subject, review.visit, review.side, review.series)
        current[knee] = review
        if review.decision == "resegment":
            resegment[knee] = review
    return Reviews(current, resegment)


def load_reviews(catalog: Catalog) -> Reviews:
    """Every reviewed knee's current and latest ``resegment`` decision."""
    return reviews_from(_all_reviews(catalog))


def list_reviews(catalog: Catalog, run: str | None = None, history: bool = False) -> list[Review]:
    """Stored decisions, oldest first: the current one of each knee, or with ``history``
    every decision ever imported; ``run`` keeps those made on that run's report.

    Raises:
        NotFoundError: ``run`` has no decisions (the message lists the runs that have).
    """
    rows = _all_reviews(catalog)
    if run is not None and not any(r.run == run for r in rows):
        runs = sorted({r.run for r in rows})
        raise NotFoundError(
            f"no QC decisions for run {run!r} in the catalog (runs with decisions: "
            f"{', '.join(runs) or 'none'}); import them with `kneescope qc import FILE`"
        )
    if not history:
        rows = sorted(reviews_from(rows).current.values(), key=lambda r: (r.decided_at, r.id))
    return [r for r in rows if run is None or r.run == run]


def decision_key(run: str, reviewer: str, decision: FileDecision) -> str:
    """The content key of one decision (sha256 hex): the same decision imported twice is
    stored once."""
    text = "\x1f".join(
        (
            run,
            decision.item_id,
            decision.decision,
            reviewer,
            _iso(decision.decided_at),
            decision.note,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_decisions` did."""

    path: str
    run: str
    reviewer: str
    sha256: str
    decisions: int
    imported: int
    """Decisions new to the catalog."""
    unchanged: int
    """Decisions the catalog held already (an earlier import of the file)."""
    by_decision: dict[str, int]
    """New decisions per kind."""
    changed_knees: int
    """Knees whose current decision this import changed (a later decision supersedes)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "run": self.run,
            "reviewer": self.reviewer,
            "sha256": self.sha256,
            "decisions": self.decisions,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "by_decision": self.by_decision,
            "changed_knees": self.changed_knees,
        }


_IDENTITY = ("subject", "visit", "side", "series")


def _run_items(catalog: Catalog, run: str) -> dict[str, tuple[str, str, str, str]]:
    """item id -> (subject, visit, side, series) of a stored run's items.

    Raises:
        NotFoundError: the run is not stored.
    """
    with catalog.session() as session:
        run_id = session.scalar(select(ResultRun.id).where(ResultRun.name == run))
        if run_id is None:
            names = sorted(session.scalars(select(ResultRun.name)))
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise NotFoundError(
                f"run {run!r} is not in the catalog's results (stored: {shown or 'none'}); "
                "import decisions into the workspace of the reviewed run (-w)"
            )
        rows = session.execute(
            select(
                ResultValue.item_id,
                ResultValue.subject,
                ResultValue.visit,
                ResultValue.side,
                ResultValue.series,
            )
            .where(ResultValue.run_id == run_id)
            .distinct()
        ).all()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _check_items(read: ReadFile, items: dict[str, tuple[str, str, str, str]]) -> None:
    content = read.content
    unknown = [d.item_id for d in content.decisions if d.item_id not in items]
    if unknown:
        shown = ", ".join(repr(i) for i in list(dict.fromkeys(unknown))[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise NotFoundError(
            f"{read.path}: {len(unknown)} decisions name items that run {content.run!r} does "
            f"not have ({shown}{more}); nothing was imported; export the decisions from this "
            "run's report"
        )
    for number, decision in enumerate(content.decisions):
        stored = dict(zip(_IDENTITY, items[decision.item_id], strict=True))
        for name in _IDENTITY:
            given = getattr(decision, name)
            if given and given != stored[name]:
                raise InputError(
                    f"{read.path}: decisions[{number}] (item {decision.item_id!r}) has {name} "
                    f"{given!r}, but run {content.run!r} has {stored[name]!r} for it; nothing "
                    "was imported; export the decisions again from this run's report"
                )


def import_decisions(catalog: Catalog, path: Path) -> ImportSummary:
    """Check a decisions file against the catalog and store its decisions (all or none).

    Each decision is stored with the file's reviewer, its own decision time, the import time,
    the file's name and sha256; the item's subject, visit, side and series are taken from
    the run's stored results. Decisions already stored (same run, item, decision, reviewer,
    time and note) are left alone, so importing a file twice changes nothing.

    Raises:
        NotFoundError: no such file; the run is not in the catalog's results; an item is not
            one of the run's.
        InputError: the file is malformed (see :func:`read_decisions_file`), or an item's
            identity differs from the run's.
        CatalogError: the database refused the write.
    """
    read = read_decisions_file(path)
    content = read.content
    items = _run_items(catalog, content.run)
    _check_items(read, items)
    keyed = {decision_key(content.run, content.reviewer, d): d for d in content.decisions}
    before = load_reviews(catalog).current
    now = utc_now()
    with catalog.session() as session:
        have = set(session.scalars(select(QcReview.key).where(QcReview.key.in_(list(keyed)))))
        new = [(key, d) for key, d in keyed.items() if key not in have]
        rows = []
        for key, decision in new:
            subject, visit, side, series = items[decision.item_id]
            rows.append(
                {
                    "key": key,
                    "run": content.run,
                    "item_id": decision.item_id,
                    "subject": subject,
                    "visit": visit,
                    "side": side,
                    "series": series,
                    "decision": decision.decision,
                    "note": decision.note,
                    "reviewer": content.reviewer,
                    "decided_at": decision.decided_at,
                    "imported_at": now,
                    "source_name": path.name,
                    "source_digest": read.digest,
                    "exported_at": content.exported_at,
                    "file_version": content.kneescope_version,
                }
            )
        if rows:
            session.execute(insert(QcReview), rows)
    after = load_reviews(catalog).current if rows else before
    changed = sum(
        1
        for knee, review in after.items()
        if knee not in before or before[knee].decision != review.decision
    )
    by_decision = {kind: sum(1 for _, d in new if d.decision == kind) for kind in DECISIONS}
    return ImportSummary(
        path=str(path),
        run=content.run,
        reviewer=content.reviewer,
        sha256=read.digest,
        decisions=len(content.decisions),
        imported=len(new),
        unchanged=len(content.decisions) - len(new),
        by_decision=by_decision,
        changed_knees=changed,
    )
