"""What an ingest did: counts, failures and timing, ready for a table or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class IngestReport:
    """Outcome of one ``kneescope ingest`` run.

    Attributes:
        kind: importer used: ``oai``, ``manifest``, ``clinical`` or ``nnunet``.
        source: the ingested path.
        added: series new to the catalog.
        updated: series whose files changed since the last ingest (re-read).
        unchanged: series skipped because their files are unchanged.
        moved: known series found at a new path (same files or SeriesInstanceUID; the
            catalog entry and its id are kept, only the path changes).
        failed: series recorded as failed in this run (a subset of added + updated).
        ignored: folders or files that fit no expected layout (logged, not cataloged).
        missing: cataloged series whose folder has disappeared (now marked failed).
        labels: label maps added or updated.
        clinical_values: clinical values added or updated.
        clinical_unchanged: clinical values already in the catalog with the same value.
        clinical_tables: clinical tables imported (a clinical source, or the ``clinical/``
            folder of an OAI-style tree such as ``kneescope synth`` writes).
        failures: ``(path, one-line reason)`` of every failed series or label map.
        warnings: one-line notes (e.g. an unreadable contents.csv).
        seconds: wall time of the run.
    """

    kind: str
    source: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    failed: int = 0
    ignored: int = 0
    missing: int = 0
    labels: int = 0
    clinical_values: int = 0
    clinical_unchanged: int = 0
    clinical_tables: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        return data
