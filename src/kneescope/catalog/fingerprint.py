"""Cheap on-disk fingerprints that decide whether an ingest re-run may skip a series.

A fingerprint hashes relative file names, sizes and modification times (never contents), so
checking an unchanged tree costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kneescope.errors import InputError


def _walk(folder: Path) -> Iterable[tuple[str, int, int]]:
    stack = [(folder, "")]
    while stack:
        current, prefix = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    yield (rel + "/", 0, 0)
                    stack.append((Path(entry.path), rel + "/"))
                else:
                    st = entry.stat()
                    yield (rel, st.st_size, st.st_mtime_ns)


def files_fingerprint(path: Path) -> str:
    """SHA-256 (hex) of the names, sizes and mtimes of a file or of every entry below a folder.

    Raises:
        InputError: the path cannot be read.
    """
    try:
        if path.is_dir():
            items = sorted(_walk(path))
        else:
            st = path.stat()
            items = [(path.name, st.st_size, st.st_mtime_ns)]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256()
    for name, size, mtime in items:
        digest.update(f"{name}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def header_fingerprint(fields: dict[str, Any]) -> str:
    """SHA-256 (hex) of decoded header facts (UIDs, shape, spacing, affine), order-independent.

    Floats are rounded to 1e-6 so that equal geometry from different readers hashes equal.
    """

    def norm(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 6) + 0.0
        if isinstance(value, list | tuple):
            return [norm(v) for v in value]
        if isinstance(value, dict):
            return {str(k): norm(v) for k, v in value.items()}
        return value

    payload = json.dumps(norm(fields), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
