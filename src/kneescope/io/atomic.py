"""Atomic writes: write into a hidden temporary sibling, then rename onto the final path.

A reader never sees a half-written file or folder: either the old content (or nothing) or the
complete new one. On any exception the temporary is removed and the final path is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


def _temp_sibling(final: Path, suffix: str) -> Path:
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}")
"""Names of the temporaries above (and of ``itk_formats``' staging folders): the pid of the
process that made them follows ``.tmp-``."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists but belongs to someone else
        return True
    return True


def _process_start_time() -> float:
    """When this process started (seconds since the epoch); now if unknown."""
    import psutil

    try:
        return float(psutil.Process().create_time())
    except psutil.Error:  # pragma: no cover - /proc unreadable
        return time.time()


def remove_stale_temps(root: Path, *, max_depth: int | None = None) -> int:
    """Delete temporaries left below ``root`` by writers that died (``kill -9``, power loss).

    A temporary is stale when the process named in it is no longer running on this machine
    and it is older than the calling process; temporaries of a live process (a concurrent
    writer) are left alone. ``max_depth`` limits how many folder levels below ``root`` are
    searched (temporaries are siblings of what is written, so a store needs only the levels
    of its keys, not its chunk folders). Returns the number removed. Never raises for a
    missing ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        return 0
    started = _process_start_time()
    removed = 0
    for folder, dirs, files in os.walk(root):
        if max_depth is not None and len(Path(folder).relative_to(root).parts) >= max_depth:
            dirs[:] = []
        for name in [*dirs, *files]:
            match = _TEMP_NAME.match(name)
            if match is None:
                continue
            path = Path(folder) / name
            try:
                mtime = path.lstat().st_mtime
            except OSError:
                continue
            if mtime >= started or _pid_alive(int(match.group(1))):
                continue
            _remove(path)
            removed += 1
            logger.info("removed stale temporary %s", path)
        dirs[:] = [d for d in dirs if not _TEMP_NAME.match(d)]
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_write_path(final: Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on clean exit move it onto ``final``.

    Args:
        final: destination file. Its folder must exist.
        suffix: appended to the temporary name so that writers that dispatch on the suffix
            (``.nii.gz``, ``.mha``) pick the right format. Defaults to the suffixes of ``final``.

    The caller writes a complete file at the yielded path. On clean exit the file is fsynced
    and ``os.replace``-d onto ``final`` (replacing an older file). On an exception the
    temporary is deleted and ``final`` is left as it was.
    """
    final = Path(final)
    if not suffix:
        suffix = "".join(final.suffixes)
    tmp = _temp_sibling(final, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write of {final}: nothing was written to {tmp}")
        if tmp.is_file():
            _fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write(final: Path, write: Callable[[Path], object], *, suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``final``, then move it onto ``final``.

    The one helper for "write a complete file, then rename" (``write`` may be
    ``frame.to_parquet``, ``np.save``, ``torch.save`` wrapped in a lambda, ...). If ``write``
    raises, the temporary is deleted and ``final`` is left as it was. ``suffix`` as for
    :func:`atomic_write_path`. Returns ``final``.
    """
    final = Path(final)
    with atomic_write_path(final, suffix=suffix) as tmp:
        write(tmp)
    return final


def atomic_write_text(final: Path, text: str) -> Path:
    """Write ``text`` (UTF-8, LF line ends) to ``final`` atomically; returns ``final``."""
    return atomic_write(final, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def atomic_write_bytes(final: Path, data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically; returns ``final``."""
    return atomic_write(final, lambda tmp: tmp.write_bytes(data))


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree; a missing path is fine."""
    _remove(path)


def replace_folder(new: Path, final: Path, *, aside: Path | None = None) -> None:
    """Rename the complete folder ``new`` onto ``final`` (same file system).

    An existing ``final`` is first renamed to ``aside`` (default: a hidden temporary sibling),
    and deleted only once ``new`` is in place; if that rename fails it is put back. So
    ``final`` is always either the old folder or the new one, never a mix, and a caller that
    names ``aside`` can recover the old folder after a kill between the two renames.
    """
    if not final.exists():
        os.replace(new, final)
        return
    old = aside if aside is not None else _temp_sibling(final, ".old")
    os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(old, final)
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_write_dir(final_dir: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``final_dir``; on clean exit rename it.

    Used for multi-file outputs (a DICOM series, a Zarr group). If ``final_dir`` already
    exists it is replaced: the old folder is first renamed aside, the new one renamed in, and
    then the old one deleted, so at no moment is a half-written folder at ``final_dir``.
    On an exception the temporary folder is deleted and ``final_dir`` is untouched.
    """
    final_dir = Path(final_dir)
    tmp = _temp_sibling(final_dir, "")
    tmp.mkdir()
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                _fsync_file(path)
        replace_folder(tmp, final_dir)
        _fsync_dir(final_dir.parent)
    except BaseException:
        _remove(tmp)
        raise
