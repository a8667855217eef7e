"""Hand memory the C allocator keeps after frees back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


def release_free_memory() -> None:
    """Return freed heap memory to the OS (glibc's ``malloc_trim(0)``; a no-op elsewhere).

    glibc keeps freed blocks mapped for reuse; after a large transient working set (a network
    pass, a measured training step) trimming lets the next allocations reuse pages instead of
    adding to the peak resident set, and makes RSS readings mean what is live.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
