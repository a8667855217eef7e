"""Checks made before a user's file is opened or any voxel is allocated.

* :func:`require_regular_file`: only regular files are ever opened (a FIFO, socket or device
  named by a user or lying in a series folder would block a reader for ever or stream without
  end).
* :func:`check_image_bytes`: an image header's claimed size, in bytes, is checked against the
  file's size (uncompressed data must fit in the file) and against a budget of decoded bytes
  (compressed data may expand, so a small file can claim gigabytes), before any allocation.

The budget is :data:`DEFAULT_MAX_IMAGE_BYTES` (4 GiB), or the environment variable
``KNEESCOPE_MAX_IMAGE_BYTES`` (bytes, or a number with a ``K``/``M``/``G``/``T`` binary
suffix, e.g. ``16G``). It bounds every decoded image and every resampled working grid.
"""

from __future__ import annotations

import bz2
import math
import os
import re
import stat
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from kneescope.core.volume import check_voxel_count
from kneescope.errors import ConfigError, InputError

MAX_IMAGE_BYTES_ENV = "KNEESCOPE_MAX_IMAGE_BYTES"
"""Environment variable overriding :data:`DEFAULT_MAX_IMAGE_BYTES`."""
DEFAULT_MAX_IMAGE_BYTES = 4 * 2**30
"""Largest decoded image (voxel bytes) kneescope reads or resamples to by default: 4 GiB."""

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def max_image_bytes() -> int:
    """The decoded-image budget in bytes (``KNEESCOPE_MAX_IMAGE_BYTES`` or 4 GiB).

    Raises:
        ConfigError: the environment variable is not a positive size.
    """
    text = os.environ.get(MAX_IMAGE_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_BYTES
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, flags=re.IGNORECASE)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{MAX_IMAGE_BYTES_ENV}={text!r} is not a size; give bytes or e.g. 8G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_bytes(n: int | float) -> str:
    """``n`` bytes in the largest binary unit below it, e.g. ``3.2 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def require_regular_file(path: Path, *, what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path`` (following links), refusing anything but a regular file.

    Call it before opening a user's path: opening a FIFO blocks until a writer appears, and a
    device may stream for ever.

    Raises:
        InputError: missing, a broken link, unreadable, or not a regular file.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise InputError(f"{path}: broken symbolic link; check the path") from None
        raise InputError(f"{path}: no such {what}; check the path") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"{path}: is {_kind(st.st_mode)}, not a regular {what}; kneescope reads only "
            "regular files"
        )
    return st


def check_image_bytes(
    shape: Sequence[int],
    itemsize: int,
    *,
    what: str,
    file_bytes: int | None = None,
    compressed: bool = False,
) -> int:
    """Check a header's claimed image size before allocating it; returns its voxel bytes.

    Args:
        shape: the voxel counts per axis the header claims.
        itemsize: bytes per voxel (times components).
        what: the file, for messages.
        file_bytes: bytes the file holds for the voxel data (file size minus header), when
            known; uncompressed data must fit in them.
        compressed: the data is compressed, so ``file_bytes`` does not bound it.

    Raises:
        InputError: non-positive or absurd dimensions, more bytes than the file holds
            (uncompressed), or more than :func:`max_image_bytes`.
    """
    dims = tuple(int(n) for n in shape)
    check_voxel_count(dims, what=what)
    needed = math.prod(dims) * int(itemsize)
    if file_bytes is not None and not compressed and needed > file_bytes:
        raise InputError(
            f"{what}: header claims {'x'.join(map(str, dims))} voxels of {itemsize} byte(s) "
            f"= {needed:,} bytes, but the file holds only {max(file_bytes, 0):,}; the file is "
            "truncated or its header is corrupt"
        )
    limit = max_image_bytes()
    if needed > limit:
        raise InputError(
            f"{what}: header claims {'x'.join(map(str, dims))} voxels of {itemsize} byte(s) "
            f"= {format_bytes(needed)}, more than the {format_bytes(limit)} kneescope reads; "
            f"the header is likely corrupt (set {MAX_IMAGE_BYTES_ENV} to allow larger images)"
        )
    return needed


_CHUNK = 1 << 20


def check_stream_holds(
    files: Sequence[Path], codec: str, needed: int, *, what: str, offset: int = 0
) -> None:
    """Decompress ``files`` (streaming, output discarded, never more than ``needed`` bytes)
    and refuse data that holds fewer than ``needed`` bytes: a tiny file whose header claims
    gigabytes is then refused before a reader allocates what it claims.

    Args:
        files: the data files in order (their decompressed bytes are summed).
        codec: ``"zlib"`` (zlib or gzip framing) or ``"bz2"``.
        needed: the voxel bytes the header claims.
        what: the file, for messages.
        offset: where the compressed data starts in the first file (attached data).

    Raises:
        InputError: corrupt compressed data, or fewer bytes than claimed.
    """
    got = 0
    try:
        for index, path in enumerate(files):
            with open(path, "rb") as fh:
                fh.seek(offset if index == 0 else 0)
                got += _decoded_bytes(fh, codec, needed - got)
            if got >= needed:
                return
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise InputError(f"{what}: corrupt compressed data ({exc})") from None
    raise InputError(
        f"{what}: header claims {needed:,} bytes of voxel data but its compressed data holds "
        f"only {got:,}; the file is truncated or its header is corrupt"
    )


def _decoded_bytes(fh: BinaryIO, codec: str, cap: int) -> int:
    got = 0
    if codec == "bz2":
        bz = bz2.BZ2Decompressor()
        while got < cap and not bz.eof:
            data = fh.read(_CHUNK) if bz.needs_input else b""
            if bz.needs_input and not data:
                break
            got += len(bz.decompress(data, min(_CHUNK * 16, cap - got)))
        return got
    z = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header
    while got < cap and not z.eof:
        data = z.unconsumed_tail or fh.read(_CHUNK)
        if not data:
            break
        got += len(z.decompress(data, min(_CHUNK * 16, cap - got)))
    return got
