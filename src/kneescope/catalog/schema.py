"""The catalog's SQL schema (SQLAlchemy 2 ORM), portable across SQLite and PostgreSQL.

Entities::

    subjects 1--n visits 1--n series n--1 knees n--1 subjects
                             series 1--n label_maps
                             series 1--1 store_entries
    subjects 1--n clinical_values (long format: visit, side nullable, variable, value)
    result_runs 1--n result_values (one row per item and value of a ``kneescope run``)
    qc_reviews (reviewers' accept / reject / re-segment decisions, ``kneescope qc import``)

Shapes are stored as JSON lists of voxel counts ``[I, J, K]`` (or ``[I, J]`` for radiographs),
spacings as JSON lists of mm per array axis. Sides are ``"right"``/``"left"`` (NULL when a
series shows both knees). Timestamps are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 3
"""Bumped whenever a table or column changes meaning (2: paths relative to the workspace;
3: the run results tables ``result_runs`` and ``result_values``). The ``qc_reviews`` table
came later without a bump: opening any catalog creates it (empty), and a kneescope that does
not know it ignores it."""

UPGRADABLE_VERSIONS = ("1", "2")
"""Versions that are upgraded in place when a catalog is opened: version 1 holds only absolute
paths, which later versions still read; version 2 lacks the run results tables, which opening
creates (empty). Nothing else changes, so the upgrade never touches an existing row."""

STATUS_OK = "ok"
STATUS_FAILED = "failed"

KIND_MRI = "mri"
KIND_RADIOGRAPH = "radiograph"
KIND_UNKNOWN = "unknown"


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every catalog table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class CatalogMeta(Base):
    """Key/value facts about the catalog itself (schema version)."""

    __tablename__ = "catalog_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Subject(Base):
    """One participant of a cohort (e.g. OAI ParticipantID ``9000099``)."""

    __tablename__ = "subjects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(Text, unique=True, index=True)
    cohort: Mapped[str | None] = mapped_column(String(32), default=None)

    visits: Mapped[list[Visit]] = relationship(back_populates="subject")
    knees: Mapped[list[Knee]] = relationship(back_populates="subject")


class Visit(Base):
    """One time point of a subject (``V00`` baseline, ``V01`` 12 months, ...)."""

    __tablename__ = "visits"
    __table_args__ = (UniqueConstraint("subject_id", "code", name="uq_visit_subject_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16), index=True)
    study_date: Mapped[str | None] = mapped_column(String(8), default=None)
    """``YYYYMMDD`` as in DICOM StudyDate, when known."""

    subject: Mapped[Subject] = relationship(back_populates="visits")


class Knee(Base):
    """One knee of a subject."""

    __tablename__ = "knees"
    __table_args__ = (UniqueConstraint("subject_id", "side", name="uq_knee_subject_side"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(8))

    subject: Mapped[Subject] = relationship(back_populates="knees")


class Series(Base):
    """One image series: a DICOM folder, a radiograph file, or a NIfTI/MHA file.

    ``files_checksum`` fingerprints what is on disk (relative names, sizes, mtimes) and decides
    whether an ingest re-run may skip the series; ``header_checksum`` fingerprints the decoded
    geometry and identity (UIDs, shape, spacing, affine) and is what the store records.
    A failed series keeps ``status="failed"`` and a one-line ``reason``.
    """

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True, index=True)
    """Path of the series folder (DICOM) or file (radiograph, NIfTI, MHA): relative to the
    workspace root (POSIX ``/``) when inside it, else absolute; see
    :func:`kneescope.workspace.to_stored`. Read it through ``Catalog.resolve``."""
    source: Mapped[str] = mapped_column(String(16))
    """Importer that wrote the row: ``oai`` or ``manifest``."""
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="SET NULL"), index=True
    )
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visits.id", ondelete="SET NULL"), index=True
    )
    knee_id: Mapped[int | None] = mapped_column(
        ForeignKey("knees.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default=KIND_UNKNOWN)
    modality: Mapped[str | None] = mapped_column(Text, default=None)
    sequence: Mapped[str | None] = mapped_column(Text, default=None, index=True)
    plane: Mapped[str | None] = mapped_column(String(8), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    series_uid: Mapped[str | None] = mapped_column(Text, default=None, index=True)
    study_uid: Mapped[str | None] = mapped_column(Text, default=None)
    n_files: Mapped[int] = mapped_column(Integer, default=0)
    shape: Mapped[list[Any] | None] = mapped_column(default=None)
    spacing_mm: Mapped[list[Any] | None] = mapped_column(default=None)
    affine_ras: Mapped[list[Any] | None] = mapped_column(default=None)
    orientation: Mapped[str | None] = mapped_column(String(8), default=None)
    dtype: Mapped[str | None] = mapped_column(String(16), default=None)
    files_checksum: Mapped[str] = mapped_column(String(64))
    header_checksum: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(8), index=True)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    subject: Mapped[Subject | None] = relationship()
    visit: Mapped[Visit | None] = relationship()
    knee: Mapped[Knee | None] = relationship()
    label_maps: Mapped[list[LabelMap]] = relationship(
        back_populates="series", cascade="all, delete-orphan"
    )
    store_entry: Mapped[StoreEntry | None] = relationship(
        back_populates="series", cascade="all, delete-orphan"
    )


class LabelMap(Base):
    """A segmentation label map (NIfTI/MHA file) on the grid of one series."""

    __tablename__ = "label_maps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    """Workspace-relative when inside the workspace, else absolute (as ``Series.path``)."""
    scheme: Mapped[str] = mapped_column(String(32), default="kneescope")
    files_checksum: Mapped[str] = mapped_column(String(64))
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    series: Mapped[Series] = relationship(back_populates="label_maps")


class ClinicalValue(Base):
    """One clinical variable of a subject, in long format.

    ``visit`` is a visit code (``V00``) or NULL for subject-level variables; ``side`` is
    ``right``/``left`` or NULL for person-level variables. ``value_num`` holds the number when
    the text parses as one (``"2: definite osteophytes"`` -> 2.0).
    """

    __tablename__ = "clinical_values"
    __table_args__ = (UniqueConstraint("key", name="uq_clinical_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    """``subject|visit|side|variable``: makes re-imports idempotent (NULLs never collide)."""
    subject_id: Mapped[int] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )
    visit: Mapped[str | None] = mapped_column(String(16), default=None, index=True)
    side: Mapped[str | None] = mapped_column(String(8), default=None)
    variable: Mapped[str] = mapped_column(Text, index=True)
    value_text: Mapped[str | None] = mapped_column(Text, default=None)
    value_num: Mapped[float | None] = mapped_column(Float, default=None)
    source: Mapped[str | None] = mapped_column(Text, default=None)


class StoreEntry(Base):
    """Where a series lies in the workspace Zarr store, and what converting it cost."""

    __tablename__ = "store_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), unique=True)
    store_key: Mapped[str] = mapped_column(Text, unique=True)
    checksum: Mapped[str] = mapped_column(String(64))
    """The series' ``files_checksum`` at conversion time: a changed series is converted again."""
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    converted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    series: Mapped[Series] = relationship(back_populates="store_entry")


class ResultRun(Base):
    """One cohort run (``kneescope run``) whose per-item values are in ``result_values``.

    A run is known by its name (``WS/runs/<name>/``); storing a run again (a re-run, a resumed
    run) replaces its row and all its values. ``config_hash`` and ``model_hash`` are the
    fingerprints that key every item of the run; ``pipeline`` is the run's resolved pipeline
    config as JSON (steps with their options, items, executor).
    """

    __tablename__ = "result_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    run_dir: Mapped[str] = mapped_column(Text)
    """The run folder, stored like ``Series.path`` (workspace-relative when inside it)."""
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """When the driver session that stored the run started (UTC)."""
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    config_hash: Mapped[str] = mapped_column(String(64))
    model_hash: Mapped[str] = mapped_column(String(64), default="")
    kneescope_version: Mapped[str] = mapped_column(String(64))
    pipeline: Mapped[dict[str, Any]] = mapped_column()
    items_done: Mapped[int] = mapped_column(Integer, default=0)
    items_failed: Mapped[int] = mapped_column(Integer, default=0)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    values: Mapped[list[ResultValue]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )


class ResultValue(Base):
    """One value of one item of one run, in tidy long format.

    ``subject``, ``visit``, ``side`` and ``series`` are the item's (``""`` when unknown, e.g.
    for items from a file list). ``capability`` is the capability of the step that produced
    the value, ``step`` its step name, ``name`` the column name as in the run's results table.
    Numbers, flags (0/1) and missing numbers (NULL, for NaN) are in ``value_num``, text and
    output file paths (stored like ``Series.path``) in ``value_text``; ``kind`` says which
    (``float``, ``int``, ``bool``, ``str``, ``file``). ``unit`` is the declared unit (``mm``,
    ``mm3``, ``1`` for counts and ratios, ``""`` for text or when the step declares none).
    Provenance per item: the input's checksum, the kneescope version and the config and model
    hashes it was computed with, and when it finished.
    """

    __tablename__ = "result_values"
    __table_args__ = (
        Index("ix_result_values_item", "subject", "visit", "side"),
        Index("ix_result_values_run_capability", "run_id", "capability"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("result_runs.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text, default="")
    visit: Mapped[str] = mapped_column(String(16), default="")
    side: Mapped[str] = mapped_column(String(8), default="")
    series: Mapped[str] = mapped_column(Text, default="")
    capability: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(Text, index=True)
    kind: Mapped[str] = mapped_column(String(8))
    value_num: Mapped[float | None] = mapped_column(Float(precision=53), default=None)
    value_text: Mapped[str | None] = mapped_column(Text, default=None)
    unit: Mapped[str] = mapped_column(String(32), default="")
    input_checksum: Mapped[str] = mapped_column(String(64), default="")
    kneescope_version: Mapped[str] = mapped_column(String(64), default="")
    config_hash: Mapped[str] = mapped_column(String(64), default="")
    model_hash: Mapped[str] = mapped_column(String(64), default="")
    computed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    run: Mapped[ResultRun] = relationship(back_populates="values")


class QcReview(Base):
    """One reviewer's decision on one knee of a run, imported from a decisions file.

    ``decision`` is ``accept``, ``reject`` or ``resegment``. ``run`` and ``item_id`` name the
    reviewed item; ``subject``, ``visit``, ``side`` and ``series`` are the item's as stored
    with the run's results (``""`` when unknown), so that later runs find the decisions of
    the knee they select. Rows are never updated or deleted: a later decision for the same
    knee supersedes an earlier one (by ``decided_at``) and the history stays. ``key`` (sha256
    of run, item, decision, reviewer, decision time and note) makes re-importing a file a
    no-op. ``source_digest`` is the sha256 of the file the decision came from.
    """

    __tablename__ = "qc_reviews"
    __table_args__ = (
        UniqueConstraint("key", name="uq_qc_review_key"),
        Index("ix_qc_reviews_knee", "subject", "visit", "side"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    run: Mapped[str] = mapped_column(String(128), index=True)
    item_id: Mapped[str] = mapped_column(Text, index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    visit: Mapped[str] = mapped_column(String(16), default="")
    side: Mapped[str] = mapped_column(String(8), default="")
    series: Mapped[str] = mapped_column(Text, default="")
    decision: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    source_name: Mapped[str] = mapped_column(Text, default="")
    """The decisions file's name (not its folder)."""
    source_digest: Mapped[str] = mapped_column(String(64))
    exported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    """When the report exported the file (its ``exported_at``)."""
    file_version: Mapped[str] = mapped_column(String(64), default="")
    """The kneescope version that wrote the report (the file's ``kneescope_version``)."""
