"""Per-item output files: a digest when written, a check when a run resumes.

A done item counts as done only while its outputs are the files its run wrote: each output's
size, mtime and sha256 are stored in the manifest when the item finishes, and a resume (or a
dry run) checks them. A missing file, another size, or other content (re-hashed when the
mtime changed) sends the item back to pending with the reason. A file rewritten with the same
size *and* mtime is not re-hashed (a resume stays cheap for 20,000 items).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kneescope.io.digest import file_sha256


def digest_file(path: Path) -> dict[str, Any]:
    """``{"size": bytes, "mtime_ns": int, "sha256": 64 hex}`` of one output file."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(path)}


def output_path(stored: str, run_dir: Path) -> Path:
    """An output path as stored in the manifest (relative to the run folder, or absolute)."""
    path = Path(stored)
    return path if path.is_absolute() else run_dir / path


def check_outputs(
    result: dict[str, Any], run_dir: Path
) -> tuple[str | None, dict[str, Any] | None]:
    """Check a done item's outputs against the digests stored with its result.

    Returns ``(reason, refreshed)``: ``reason`` is None when every output is intact, else
    why the item must run again; ``refreshed`` holds updated digests when only mtimes
    changed (same content), else None.
    """
    files: dict[str, str] = result.get("files", {})
    digests: dict[str, Any] = result.get("outputs", {}) or {}
    refreshed = dict(digests)
    changed_mtime = False
    for name, stored in files.items():
        path = output_path(stored, run_dir)
        try:
            st = os.stat(path)
        except OSError:
            return f"output {name} ({path}) is missing; recomputed", None
        want = digests.get(name)
        if want is None:
            continue  # a result recorded before digests were kept: existence is all we know
        if st.st_size != want["size"]:
            return f"output {name} ({path}) changed size; recomputed", None
        if st.st_mtime_ns != want["mtime_ns"]:
            try:
                now = digest_file(path)
            except OSError:
                return f"output {name} ({path}) is unreadable; recomputed", None
            if now["sha256"] != want["sha256"]:
                return f"output {name} ({path}) changed content; recomputed", None
            refreshed[name] = now
            changed_mtime = True
    return None, (refreshed if changed_mtime else None)
