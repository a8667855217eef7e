"""Where each page of a report lives, relative to the report folder (shared by every page).

A report folder holds ``index.html`` (the cohort page), ``knees/<subject>_<side>_<visit>.html``
(one page per knee and visit) and the figures each page shows, in ``knees/<page stem>/`` and
``cohort/``.
"""

from __future__ import annotations

import re

COHORT_PAGE = "index.html"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_part(text: str) -> str:
    """``text`` with every run of characters outside ``A-Za-z0-9._-`` replaced by ``-``."""
    return _UNSAFE.sub("-", str(text)).strip("-") or "unknown"


def knee_page_stem(subject: str, side: str, visit: str) -> str:
    """The file stem of a knee page, e.g. ``9000099_right_V00``."""
    return f"{safe_part(subject)}_{safe_part(side)}_{safe_part(visit)}"


def knee_page_path(subject: str, side: str, visit: str) -> str:
    """A knee page relative to the report folder, e.g. ``knees/9000099_right_V00.html``."""
    return f"knees/{knee_page_stem(subject, side, visit)}.html"
