"""Memory budgets from text: ``"11GB"``, ``"80GB"``, ``"10.5GiB"``, ``"512MB"`` or ``"host"``."""

from __future__ import annotations

import re

from kneescope.errors import InputError

_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*$")


def host_available_bytes() -> int:
    """Memory the host can give now (``psutil`` available RAM)."""
    import psutil

    return int(psutil.virtual_memory().available)


def parse_budget(text: str) -> int:
    """Bytes in ``text``. GB/MB are decimal (11GB = 11e9 B), GiB/MiB binary; ``host`` = free RAM.

    Raises:
        InputError: not a size.
    """
    if text.strip().lower() == "host":
        return host_available_bytes()
    match = _PATTERN.match(text)
    unit = match.group(2).upper() if match else ""
    if match is not None and not unit:
        raise InputError(
            f"budget {text!r} has no unit (it would be {text.strip()} bytes); write e.g. "
            f"{text.strip()}GB (decimal) or {text.strip()}GiB (binary)"
        )
    if match is None or unit not in _UNITS:
        raise InputError(
            f"budget {text!r} is not a size; expected e.g. 11GB, 80GB, 10GiB, 512MB or host"
        )
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise InputError(f"budget {text!r} must be positive")
    return value


def format_bytes(nbytes: float) -> str:
    """``nbytes`` as decimal GB/MB with 2 significant decimals (e.g. ``"10.08 GB"``)."""
    if abs(nbytes) >= 10**9:
        return f"{nbytes / 10**9:.2f} GB"
    return f"{nbytes / 10**6:.1f} MB"
