"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks``).

kneescope's docstrings use reStructuredText roles (``:func:`measure_knee```,
``:class:`~kneescope.core.volume.Volume```) and ``::`` before literal blocks; mkdocstrings
renders them as Markdown, which leaves the role names in the text. This hook shows a role as
the code it names (``~a.b.C`` as ``C``, as Sphinx does) and a paragraph's closing ``::`` as
``:``. It changes the rendered HTML only, never a source file.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    # the role's leading colon may be gone: griffe reads a Returns line ":class:`X`." as a
    # type-less entry whose text starts "class:`X`."
    r"(?:(?<=[\s>(])|^):?(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):"
    r"<code>(~?)([^<]*)</code>",
    flags=re.M,
)
_LITERAL = re.compile(r"::</p>")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    shown = target.rsplit(".", 1)[-1] if tilde else target
    return f"<code>{shown}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """The page's HTML with reStructuredText roles shown as code."""
    return _LITERAL.sub(":</p>", _ROLE.sub(_role, html))
