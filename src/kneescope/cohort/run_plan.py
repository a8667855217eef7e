"""What a run would do, without doing it (``kneescope run --dry-run``).

Reads the existing manifest (if any) read-only and classifies every selected item as new,
changed (key differs, or its outputs were deleted or changed: re-run), done (skipped), failed
with attempts left (retried) or failed for good. Nothing is written and no step is built.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kneescope import __version__
from kneescope.cohort.cohort_steps import check_cohort_step_names
from kneescope.cohort.item import Item
from kneescope.cohort.item_sources import iter_items
from kneescope.cohort.manifest import Manifest, manifest_errors
from kneescope.cohort.outputs import check_outputs
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import item_key, run_dir_for
from kneescope.cohort.step_registry import prepare_steps
from kneescope.workspace import Workspace


@dataclass(frozen=True)
class RunPlan:
    """Counts of what a run would do. ``to_run`` = new + changed + retry + interrupted."""

    name: str
    run_dir: str
    total: int
    new: int
    changed: int
    done: int
    retry: int
    failed_final: int
    interrupted: int
    to_run: int
    config_hash: str
    model_hash: str
    kneescope_version: str
    cohort_steps: tuple[str, ...] = ()
    """The cohort-level steps that run after the items (each skipped when what it saw is
    unchanged)."""
    qc_excluded: int = 0
    """Items left out because a reviewer rejected them (``items.qc_rejected = "exclude"``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_run(config: PipelineConfig, workspace: Workspace, base_dir: Path | None = None) -> RunPlan:
    """Classify the selection against the run's manifest. Input checksums are recomputed
    only for files whose size or mtime changed (as a real run would); done items whose
    output files were deleted or changed count as ``changed``.

    Instantiates no step: step names are checked against the registered entry points
    before any step module is imported, and the hashes come from the step classes.
    """
    from kneescope.cohort.item_sources import checksum_from_cache
    from kneescope.cohort.qc_honour import RejectedFilter, redo_token, workspace_reviews

    prepared = prepare_steps(config.steps, workspace, base_dir or workspace.root)
    check_cohort_step_names(config.cohort_steps)
    reviews = workspace_reviews(workspace)
    rejected = RejectedFilter(reviews, config.items.qc_rejected == "exclude")
    hashes = prepared.hashes
    run_dir = run_dir_for(workspace, config)
    manifest_path = run_dir / "manifest.sqlite"
    manifest = Manifest(manifest_path, readonly=True) if manifest_path.exists() else None
    counts = dict.fromkeys(("new", "changed", "done", "retry", "failed_final", "interrupted"), 0)
    total = 0
    db = None if manifest is None else manifest.connection
    try:
        with manifest_errors(manifest_path):
            for raw in rejected(
                iter_items(
                    config.items, base_dir or workspace.root, workspace.catalog_url, workspace.root
                )
            ):
                item: Item = checksum_from_cache(raw, manifest)
                total += 1
                key = item_key(
                    item, hashes["config_hash"], hashes["model_hash"], redo_token(reviews, item)
                )
                row = (
                    None
                    if db is None
                    else db.execute(
                        "SELECT key_hash, state, attempts, result_json FROM items "
                        "WHERE item_id = ?",
                        (item.item_id,),
                    ).fetchone()
                )
                if row is None:
                    counts["new"] += 1
                elif row[0] != key:
                    counts["changed"] += 1
                elif row[1] == "done":
                    reason, _ = check_outputs(json.loads(row[3] or "{}"), run_dir)
                    counts["done" if reason is None else "changed"] += 1
                elif row[1] == "failed":
                    counts["retry" if row[2] < config.max_attempts else "failed_final"] += 1
                else:
                    counts["interrupted"] += 1
    finally:
        if manifest is not None:
            manifest.close()
    to_run = counts["new"] + counts["changed"] + counts["retry"] + counts["interrupted"]
    return RunPlan(
        name=config.name,
        run_dir=str(run_dir),
        total=total,
        to_run=to_run,
        kneescope_version=__version__,
        new=counts["new"],
        changed=counts["changed"],
        done=counts["done"],
        retry=counts["retry"],
        failed_final=counts["failed_final"],
        interrupted=counts["interrupted"],
        config_hash=hashes["config_hash"],
        model_hash=hashes["model_hash"],
        cohort_steps=tuple(c.name for c in config.cohort_steps),
        qc_excluded=rejected.count,
    )
