"""Convert cataloged series into the workspace's Zarr store, in parallel processes.

Every series with status ``ok`` is read (DICOM, NIfTI, MHA...) and written to
:class:`~kneescope.io.zarr_store.VolumeStore` under a readable key
``<subject>/<visit>/<side>/<sequence>-s<id>`` with its geometry and provenance (source path,
series UID, checksums, kneescope version) as attributes. A series whose store entry carries
its current ``files_checksum`` and whose array exists is skipped; a changed series is
converted again in place. Workers are processes (``concurrent.futures``); only the parent
process writes to the catalog, one store entry per finished series, so an interrupted run
resumes where it stopped. A series that fails to convert is reported and the run goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kneescope import __version__
from kneescope.catalog.database import Catalog
from kneescope.catalog.schema import STATUS_OK, Knee, Series, StoreEntry, Subject, Visit, utc_now
from kneescope.catalog.workers import sigint_deferred
from kneescope.errors import InputError, KneescopeError, StoreError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

_STORE_ATTEMPTS = 4
_KEY_DEPTH = 4
"""Segments of a store key (``subject/visit/side/sequence-sID``): where temporaries can be."""
_RECORD_EVERY_S = 2.0
"""Store entries are committed at least this often (and at the end)."""


@dataclass(frozen=True)
class ConvertTask:
    """One series to convert (plain values, picklable); ``path`` is the real absolute path."""

    series_id: int
    path: str
    kind: str
    store_key: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class ConvertOutcome:
    """What a worker did with one task; ``error`` is a one-line reason when it failed."""

    series_id: int
    store_key: str
    checksum: str
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class ConvertReport:
    """Totals of one ``kneescope convert`` run.

    ``mb_per_s`` is raw megabytes (1e6 bytes) converted per wall-clock second of the whole
    run (read + compress + write, all workers together); ``ratio`` is bytes_in / bytes_out.
    """

    store: str
    jobs: int
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.bytes_in / self.bytes_out if self.bytes_out else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        data["ratio"] = round(self.ratio, 4)
        data["mb_per_s"] = round(self.mb_per_s, 3)
        return data


def _segment(text: str | None, default: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text or "").lstrip("._-")
    return cleaned or default


def store_key_for(series_id: int, subject: str | None, visit: str | None, side: str | None,
                  sequence: str | None) -> str:  # fmt: skip
    """``<subject>/<visit>/<side>/<sequence>-s<id>``, each segment made store-safe."""
    return "/".join(
        (
            _segment(subject, "unknown"),
            _segment(visit, "no-visit"),
            _segment(side, "bilateral"),
            f"{_segment(sequence, 'series')}-s{series_id}",
        )
    )


def plan_conversion(catalog: Catalog, store_root: Path, *, force: bool = False) -> tuple[
    list[ConvertTask], int
]:  # fmt: skip
    """The tasks still to do and the number of series already converted (skipped)."""
    from kneescope.io.zarr_store import VolumeStore

    store = VolumeStore(store_root)
    stmt = (
        select(Series, Subject.code, Visit.code, Knee.side, StoreEntry)
        .outerjoin(Subject, Series.subject_id == Subject.id)
        .outerjoin(Visit, Series.visit_id == Visit.id)
        .outerjoin(Knee, Series.knee_id == Knee.id)
        .outerjoin(StoreEntry, StoreEntry.series_id == Series.id)
        .where(Series.status == STATUS_OK)
        .order_by(Series.id)
    )
    tasks: list[ConvertTask] = []
    skipped = 0
    with catalog.session() as session:
        for series, subject, visit, side, entry in session.execute(stmt):
            key = (
                entry.store_key
                if entry is not None
                else store_key_for(series.id, subject, visit, side, series.sequence)
            )
            if (
                not force
                and entry is not None
                and entry.checksum == series.files_checksum
                and store.has(key)
            ):
                skipped += 1
                continue
            source = str(catalog.resolve(series.path))
            attrs = {
                "source_path": source,
                "series_id": series.id,
                "series_uid": series.series_uid,
                "subject": subject,
                "visit": visit,
                "side": side,
                "sequence": series.sequence,
                "kind": series.kind,
                "modality": series.modality,
                "files_checksum": series.files_checksum,
                "header_checksum": series.header_checksum,
                "kneescope_version": __version__,
                "converted_at": utc_now().isoformat(),
            }
            tasks.append(ConvertTask(series.id, source, series.kind, key, attrs))
    return tasks, skipped


def convert_one(task: ConvertTask, store_root: str) -> ConvertOutcome:
    """Read one series and write it to the store (runs in a worker process; never raises).

    A store error is retried a few times: workers that create the same parent group at the
    same moment can see each other's half-written group metadata.
    """
    from kneescope.catalog.volumes import read_series
    from kneescope.errors import StoreError
    from kneescope.io.zarr_store import VolumeStore

    checksum = str(task.attrs["files_checksum"])
    start = time.perf_counter()
    try:
        volume = read_series(task.path, task.kind)
        store = VolumeStore(Path(store_root))
        for attempt in range(_STORE_ATTEMPTS):
            try:
                stats = store.write(task.store_key, volume, task.attrs, overwrite=True)
                break
            except StoreError:
                if attempt == _STORE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1) * (1 + task.series_id % 3))
    except Exception as exc:  # a bad series must not stop the run
        text = " ".join(str(exc).split())
        reason = text if isinstance(exc, KneescopeError) else f"{type(exc).__name__}: {text}"
        return ConvertOutcome(task.series_id, task.store_key, checksum, error=reason)
    return ConvertOutcome(
        task.series_id,
        task.store_key,
        checksum,
        bytes_in=stats.bytes_in,
        bytes_out=stats.bytes_out,
        seconds=time.perf_counter() - start,
    )


def check_store_writable(store_root: Path) -> None:
    """Create the store folder if needed, prove that a file can be written in it, and remove
    temporaries that killed writers left there (:func:`~kneescope.io.atomic.remove_stale_temps`).

    Raises:
        StoreError: the folder cannot be created or written, with the system's reason.
    """
    from kneescope.io.atomic import remove_stale_temps

    # named like io.atomic's temporaries, so that a run killed right here leaves nothing
    probe = store_root / f".write-probe.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        store_root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        raise StoreError(
            f"cannot write the store {store_root} ({cause}); nothing was converted: check that "
            "the disk is mounted writable, has free space and that the path is a folder"
        ) from None
    removed = remove_stale_temps(store_root, max_depth=_KEY_DEPTH + 1)
    if removed:
        log.info("removed %d stale temporaries from %s", removed, store_root)


def _outcomes(tasks: list[ConvertTask], store_root: Path, jobs: int) -> Iterator[ConvertOutcome]:
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield convert_one(task, str(store_root))
        return
    context = multiprocessing.get_context("spawn")  # no forked locks from threads or the DB
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context)
    try:
        pending: set[Future[ConvertOutcome]] = set()
        queue = iter(tasks)
        with sigint_deferred():  # workers spawned now never see Ctrl-C: the parent does
            for task in queue:
                pending.add(pool.submit(convert_one, task, str(store_root)))
                if len(pending) >= 2 * jobs:
                    break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(convert_one, nxt, str(store_root)))
    except BaseException:
        # Ctrl-C or an error: start nothing more; the series being written finish (their
        # writes are atomic) and the workers exit quietly before the parent does
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def convert_catalog(
    catalog: Catalog,
    store_root: Path,
    *,
    jobs: int = 1,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> ConvertReport:
    """Convert every ok series not yet in the store; record store entries in the catalog.

    Temporaries left in the store by a killed earlier run are removed first.

    Raises:
        InputError: ``jobs`` < 1.
        StoreError: the store folder cannot be created or written (nothing is converted).
    """
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    start = time.perf_counter()
    store_root = store_root.absolute()
    check_store_writable(store_root)
    tasks, skipped = plan_conversion(catalog, store_root, force=force)
    report = ConvertReport(store=str(store_root), jobs=jobs, skipped=skipped)
    paths = {t.series_id: t.path for t in tasks}
    finished: list[ConvertOutcome] = []
    last_commit = time.perf_counter()
    try:
        for done, outcome in enumerate(_outcomes(tasks, store_root, jobs), start=1):
            if outcome.error is not None:
                report.failed += 1
                report.failures.append((paths[outcome.series_id], outcome.error))
                log.info("convert failed %s: %s", paths[outcome.series_id], outcome.error)
            else:
                finished.append(outcome)
                report.converted += 1
                report.bytes_in += outcome.bytes_in
                report.bytes_out += outcome.bytes_out
            if finished and time.perf_counter() - last_commit > _RECORD_EVERY_S:
                _record(catalog, finished)
                finished, last_commit = [], time.perf_counter()
            if progress:
                progress(done, len(tasks))
    finally:
        if finished:
            _record(catalog, finished)  # also when interrupted: keep what is done
    report.seconds = time.perf_counter() - start
    return report


def _record(catalog: Catalog, outcomes: list[ConvertOutcome]) -> None:
    """Upsert the store entries of converted series in one transaction."""
    ids = [o.series_id for o in outcomes]
    with catalog.session() as session:
        entries = {
            e.series_id: e
            for e in session.scalars(select(StoreEntry).where(StoreEntry.series_id.in_(ids)))
        }
        for outcome in outcomes:
            entry = entries.get(outcome.series_id)
            if entry is None:
                entry = StoreEntry(series_id=outcome.series_id, store_key=outcome.store_key)
                session.add(entry)
            entry.store_key = outcome.store_key
            entry.checksum = outcome.checksum
            entry.bytes_in = outcome.bytes_in
            entry.bytes_out = outcome.bytes_out
            entry.converted_at = utc_now()
