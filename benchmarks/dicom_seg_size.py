"""DICOM SEG size and speed: each knee of a finished run written as a SEG with every lossless
compression kneescope offers, against the uncompressed FRACTIONAL and BINARY objects; every
file read back onto its series voxel for voxel and checked with ``dciodvfy``.

Run (on the 4 full-size demo knees, 128 x 352 x 352 voxels; a copy of a ``kneescope demo``
workspace, because the SEGs are written below it)::

    .venv/bin/python benchmarks/dicom_seg_size.py -w WS --run demo [-o WS/seg-bench]

Prints one line per knee and variant (bytes, write and read seconds, round trip identical,
dciodvfy errors) and the sizes relative to uncompressed; ``--json`` for a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.catalog.database import Catalog
from kneescope.catalog.export_dicom_seg import dicom_source_folder
from kneescope.catalog.queries import get_series
from kneescope.catalog.volumes import read_image_file
from kneescope.cohort.results_table import read_run_results
from kneescope.core.labels import KNEE_LABELS
from kneescope.io.dicom_seg import SegAlgorithm, read_dicom_seg, write_dicom_seg
from kneescope.io.dicom_series import read_dicom_series
from kneescope.workspace import Workspace

VARIANTS: tuple[tuple[str, str, bool], ...] = (
    ("jpeg-ls", "jpeg-ls", False),
    ("rle", "rle", False),
    ("fractional-uncompressed", "none", False),
    ("binary-uncompressed", "none", True),
)


def dciodvfy_errors(path: Path) -> int | None:
    """Number of ``Error`` lines dciodvfy reports (None: dciodvfy not installed)."""
    if shutil.which("dciodvfy") is None:
        return None
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return sum(line.startswith("Error") for line in (out.stdout + out.stderr).splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--run", default="demo")
    parser.add_argument("-o", "--output", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ws = Workspace.resolve(args.workspace)
    out_dir = args.output or ws.root / "seg-bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    table = read_run_results(ws.runs_dir / args.run)
    values = {name: value for value, name in KNEE_LABELS.labels.items()}
    algorithm = SegAlgorithm(kind="AUTOMATIC", name="benchmark", version="0")
    rows: list[dict[str, Any]] = []
    cat = Catalog.for_workspace(ws, create=False)
    try:
        for row in table.itertuples():
            record = get_series(cat, str(row.series))
            source = dicom_source_folder(record)
            labels = read_image_file(Path(str(row.file_segment_labels)))
            image = read_dicom_series(source)
            for name, compression, binary in VARIANTS:
                path = out_dir / f"{row.item_id}_{name}.dcm"
                t0 = time.perf_counter()
                written = write_dicom_seg(
                    labels,
                    source,
                    path,
                    label_names=KNEE_LABELS.labels,
                    algorithm=algorithm,
                    side=record.side,
                    compression=compression,  # type: ignore[arg-type]
                    binary=binary,
                    overwrite=True,
                )
                t1 = time.perf_counter()
                back = read_dicom_seg(path, label_values=values, reference=image)
                t2 = time.perf_counter()
                rows.append(
                    {
                        "item": row.item_id,
                        "side": record.side,
                        "variant": name,
                        "bytes": written.size_bytes,
                        "frames": written.n_frames,
                        "write_s": round(t1 - t0, 2),
                        "read_s": round(t2 - t1, 2),
                        "identical": bool(np.array_equal(back.array, labels.array)),
                        "dciodvfy_errors": dciodvfy_errors(path),
                    }
                )
                if not args.json:
                    print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    finally:
        cat.close()
    summary: dict[str, Any] = {"knees": len(table), "rows": rows, "mean_bytes": {}}
    for name, _c, _b in VARIANTS:
        sizes = [r["bytes"] for r in rows if r["variant"] == name]
        summary["mean_bytes"][name] = float(np.mean(sizes))
    base = summary["mean_bytes"]["fractional-uncompressed"]
    summary["ratio_vs_fractional_uncompressed"] = {
        k: round(v / base, 4) for k, v in summary["mean_bytes"].items()
    }
    summary["all_identical"] = all(r["identical"] for r in rows)
    summary["dciodvfy_errors_total"] = sum(r["dciodvfy_errors"] or 0 for r in rows)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for k, v in summary["mean_bytes"].items():
            ratio = summary["ratio_vs_fractional_uncompressed"][k]
            print(f"mean {k}: {v / 1e6:.3f} MB ({ratio:.4f} of fractional uncompressed)")
        print(
            f"all identical: {summary['all_identical']}; "
            f"dciodvfy errors: {summary['dciodvfy_errors_total']}"
        )


if __name__ == "__main__":
    main()
