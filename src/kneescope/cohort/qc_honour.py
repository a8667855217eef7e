"""Runs honour reviewers' QC decisions (``kneescope qc import``; docs/qc_review.md).

For every item a run selects, the knee's current decision in the workspace catalog
(:mod:`kneescope.catalog.qc_reviews`) decides:

- ``reject``: with ``items.qc_rejected = "flag"`` (default) the item runs as before (a done
  item is not recomputed) and its row in ``RUN/results.parquet`` says ``qc_review = reject``
  with the reviewer, time and note; with ``"exclude"`` the item leaves the run's selection
  (not run, not in the results; ``kneescope status`` lists it). Either way cohort-level steps
  never see a rejected knee.
- ``resegment``: the decision's key enters the item's key, so the next run redoes the item
  once (a later ``accept`` does not redo it again); its row then says ``resegmented``.
- ``accept``: nothing changes but the review columns.

The review columns (:data:`~kneescope.catalog.qc_reviews.REVIEW_COLUMNS`) are added to a run's
results table only when one of its knees was reviewed: a run without reviews keeps its table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from kneescope.catalog.qc_reviews import REVIEW_COLUMNS, Reviews
from kneescope.cohort.item import Item
from kneescope.errors import CatalogError, NotFoundError
from kneescope.workspace import Workspace

log = logging.getLogger(__name__)

REJECT = "reject"
EXCLUDED_META = "qc_excluded"
"""Manifest meta key: the item ids the last session left out as rejected (first 200)."""
EXCLUDED_COUNT_META = "qc_excluded_count"
_SHOWN = 200


def workspace_reviews(workspace: Workspace) -> Reviews:
    """The reviews in the workspace catalog; none when the workspace has no catalog, or
    (logged at info level) when the catalog cannot be read: a run then stops later, where it
    stores its results in the catalog, with its own message."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.qc_reviews import load_reviews

    if workspace.catalog_url_override is None and not workspace.catalog_path.is_file():
        return Reviews()
    try:
        # opened as is (no schema created): a dry run or `status` writes nothing
        catalog = Catalog.open(workspace.catalog_url, create=False, root=workspace.root)
    except NotFoundError:
        return Reviews()
    except CatalogError as exc:
        # not a warning: the run's one error line, where it stores its results, says it
        log.info("QC review decisions not read: %s", exc)
        return Reviews()
    try:
        return load_reviews(catalog)
    except CatalogError as exc:
        log.info("QC review decisions not read: %s", exc)
        return Reviews()
    finally:
        catalog.close()


def redo_token(reviews: Reviews, item: Item) -> str:
    """What a ``resegment`` decision adds to the item's key ("" when none)."""
    return reviews.redo_token(item.item_id, item.subject, item.visit, item.side, item.series)


def is_rejected(reviews: Reviews, item: Item) -> bool:
    review = reviews.of(item.item_id, item.subject, item.visit, item.side, item.series)
    return review is not None and review.decision == REJECT


class RejectedFilter:
    """Leaves rejected items out of a selection (``items.qc_rejected = "exclude"``),
    remembering which."""

    def __init__(self, reviews: Reviews, exclude: bool) -> None:
        self.reviews = reviews
        self.exclude = exclude and bool(reviews)
        self.left_out: list[str] = []
        self.count = 0

    def __call__(self, items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            if self.exclude and is_rejected(self.reviews, item):
                self.count += 1
                if len(self.left_out) < _SHOWN:
                    self.left_out.append(item.item_id)
                continue
            yield item

    def report(self, run: str) -> None:
        if self.count:
            log.warning(
                "run %s: %d items left out: rejected in QC review (items.qc_rejected = "
                "'exclude'); see `kneescope qc list`",
                run,
                self.count,
            )


def _computed_at(seconds: Any) -> datetime | None:
    if not isinstance(seconds, int | float) or seconds <= 0:
        return None
    return datetime.fromtimestamp(float(seconds), UTC)


def reviewed_rows(
    rows: list[dict[str, Any]], records: list[dict[str, Any]], reviews: Reviews
) -> list[dict[str, Any]]:
    """The results table's rows with the review columns after the key columns, when any
    row's knee was reviewed; otherwise ``rows`` unchanged. ``records`` are the manifest
    records the rows were made from (same order: their finish times)."""
    if not reviews:
        return rows
    columns = [
        reviews.columns(row, _computed_at(rec.get("finished_at")))
        for row, rec in zip(rows, records, strict=True)
    ]
    if not any(c["qc_review"] for c in columns):
        return rows
    out = []
    for row, extra in zip(rows, columns, strict=True):
        keys = list(row)
        at = keys.index("series") + 1 if "series" in keys else len(keys)
        out.append({**{k: row[k] for k in keys[:at]}, **extra, **{k: row[k] for k in keys[at:]}})
    return out


def cohort_input(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows cohort-level steps see: every row but rejected knees'."""
    if not rows or REVIEW_COLUMNS[0] not in rows[0]:
        return rows
    return [row for row in rows if row.get(REVIEW_COLUMNS[0]) != REJECT]
