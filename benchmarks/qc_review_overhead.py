"""What honouring reviewers' QC decisions costs at cohort scale.

A catalog (SQLite file) with one stored run of ``--items`` knees (one value each), a
decisions file covering every ``--every``-th knee (accept / reject / resegment in turn):

1. ``kneescope qc import`` of that file (``import_decisions``: validation, checks against the
   run, one transaction) and a re-import (nothing new);
2. loading the decisions for a run (``load_reviews``) - once per ``kneescope run``;
3. per item: the selection filter (``items.qc_rejected = "exclude"``) and the resegment key
   token, as the runner applies them; per row: the review columns of the results table.

    .venv/bin/python benchmarks/qc_review_overhead.py [--items 20000] [--every 20]

Prints one JSON object (seconds, microseconds per item). Compare: the driver's own cost is
about 640 us per item in-process (benchmarks/cohort_bookkeeping.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kneescope.catalog.database import Catalog
from kneescope.catalog.qc_reviews import FORMAT, import_decisions, load_reviews
from kneescope.catalog.results_store import RunRecord, ValueRecord, store_run_results
from kneescope.cohort.item import Item
from kneescope.cohort.qc_honour import RejectedFilter, redo_token, reviewed_rows

DECISIONS = ("accept", "reject", "resegment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--every", type=int, default=20, help="review every N-th knee")
    args = parser.parse_args()
    t0 = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    items = [
        Item(f"series-{i}", f"S{i:06d}", "V00", ("right", "left")[i % 2], f"1.2.3.{i}")
        for i in range(args.items)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog = Catalog.open(f"sqlite:///{root / 'catalog.sqlite'}")
        run = RunRecord("bench", root / "runs" / "bench", t0, t0, "cfg", "", "bench")
        store_run_results(
            catalog,
            run,
            (
                ValueRecord(
                    i.item_id, i.subject, i.visit, i.side, i.series, "b", "s", "x", "float", 1.0
                )
                for i in items
            ),
        )
        reviewed = items[:: args.every]
        decisions = [
            {"item_id": i.item_id, "decision": DECISIONS[n % 3], "note": "",
             "decided_at": "2026-12-01T14:02:11Z"}
            for n, i in enumerate(reviewed)
        ]  # fmt: skip
        path = root / "qc-decisions-bench.json"
        path.write_text(
            json.dumps(
                {"format": FORMAT, "version": 1, "run": "bench", "reviewer": "B. Bench",
                 "decisions": decisions}
            )
        )  # fmt: skip
        start = time.perf_counter()
        first = import_decisions(catalog, path)
        import_s = time.perf_counter() - start
        start = time.perf_counter()
        again = import_decisions(catalog, path)
        reimport_s = time.perf_counter() - start
        start = time.perf_counter()
        reviews = load_reviews(catalog)
        load_s = time.perf_counter() - start
        catalog.close()
    start = time.perf_counter()
    rejected = RejectedFilter(reviews, exclude=True)
    tokens = [redo_token(reviews, item) for item in rejected(items)]
    select_s = time.perf_counter() - start
    rows = [
        {"item_id": i.item_id, "subject": i.subject, "visit": i.visit, "side": i.side,
         "series": i.series, "mean": 1.0}
        for i in items
    ]  # fmt: skip
    records = [{"finished_at": t0.timestamp() + 3600.0} for _ in items]
    start = time.perf_counter()
    table = reviewed_rows(rows, records, reviews)
    columns_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "items": args.items,
                "decisions": len(decisions),
                "imported": first.imported,
                "reimported_new": again.imported,
                "import_s": round(import_s, 3),
                "reimport_s": round(reimport_s, 3),
                "load_reviews_s": round(load_s, 4),
                "excluded": rejected.count,
                "redo_tokens": sum(1 for t in tokens if t),
                "select_and_key_us_per_item": round(1e6 * select_s / args.items, 2),
                "review_columns_us_per_row": round(1e6 * columns_s / args.items, 2),
                "rejected_rows": sum(1 for r in table if r.get("qc_review") == "reject"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
