"""The tidy results table, rebuilt from the manifest's stored results.

One row per done item, keyed by subject, visit, side and series (plus item_id), with every
step's values, output file paths, and provenance on every row: kneescope version, model hash,
config hash, input checksum, attempts, worker, Slurm job id and per-step / per-phase seconds.
Written atomically (temp + rename), so a reader never sees half a table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from kneescope.cohort.manifest import Manifest
from kneescope.cohort.step import PHASES

KEY_COLUMNS = ("item_id", "subject", "visit", "side", "series")


def table_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """Flat result rows of every done item, in selection order."""
    rows = []
    for rec in manifest.rows(("done",)):
        result = rec["result"]
        prov = result.get("provenance", {})
        row: dict[str, Any] = {k: rec[k] for k in KEY_COLUMNS}
        for name, value in result.get("values", {}).items():
            row[f"value_{name}" if name in KEY_COLUMNS else name] = value
        row.update({f"file_{k}": v for k, v in result.get("files", {}).items()})
        row.update(
            {
                "kneescope_version": prov.get("kneescope_version", ""),
                "model_hash": prov.get("model_hash", ""),
                "config_hash": prov.get("config_hash", ""),
                "input_checksum": rec["input_checksum"],
                "input_path": rec["path"],
                "attempts": rec["attempts"],
                "worker": rec["worker"],
                "slurm_job_id": rec["slurm_job_id"] or "",
            }
        )
        timings = rec["timings"]
        for name, seconds in timings.get("steps", {}).items():
            row[f"time_step_{name}_s"] = seconds
        for phase in PHASES:
            row[f"time_{phase}_s"] = timings.get("phases", {}).get(phase, 0.0)
        row["time_total_s"] = sum(timings.get("steps", {}).values())
        rows.append(row)
    return rows


def write_results(manifest: Manifest, run_dir: Path, fmt: Literal["parquet", "csv"]) -> Path:
    """Write RUN/results.parquet (or .csv) from the manifest; returns its path."""
    import pandas as pd

    frame = pd.DataFrame(table_rows(manifest))
    if frame.empty:
        frame = pd.DataFrame(columns=list(KEY_COLUMNS))
    final = run_dir / f"results.{fmt}"
    tmp = run_dir / f".tmp-{os.getpid()}-results.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    os.replace(tmp, final)
    return final
