"""The Jinja2 environment of the report pages and the report's static files.

Every page is rendered by :func:`environment` (``autoescape=True`` always: header strings,
descriptions and notes are shown as text, never as markup) from ``templates/`` and links the
style sheet copied by :func:`write_static`. Templates extend ``base.html.j2`` (blocks
``title`` and ``content``; variables ``static``: the relative URL of the report's
``static/`` folder, ``run_name``, ``kneescope_version``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_FOLDER = "static"
"""The report folder's sub-folder holding the style sheet and scripts."""


def format_number(value: Any, digits: int = 3) -> str:
    """A number for a table cell: ``digits`` significant digits (no exponent for everyday
    magnitudes), thousands kept whole; "–" for NaN, None and text that is no number."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "–"
    if number != 0 and abs(number) >= 10**digits:
        return f"{number:,.0f}"
    if number != 0 and abs(number) < 10 ** -(digits + 1):
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}g}"


@lru_cache(maxsize=1)
def environment() -> Any:
    """The Jinja2 environment of the report templates (autoescape on, strict undefined,
    filter ``num``: :func:`format_number`)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a file name in ``templates/``) with ``context``."""
    return str(environment().get_template(template).render(**context))


def write_static(report_dir: Path) -> list[Path]:
    """Copy every file of the package's ``static/`` folder into ``report_dir/static/``
    (atomically each, replacing older copies); returns the written paths."""
    from kneescope.io.atomic import atomic_write_bytes

    out = []
    target = report_dir / STATIC_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(STATIC.iterdir()):
        if source.is_file() and not source.name.startswith("."):
            atomic_write_bytes(target / source.name, source.read_bytes())
            out.append(target / source.name)
    return out
