"""MkDocs hook: render the reStructuredText roles of the docstrings as plain code.

The docstrings cross-reference with Sphinx roles (``:func:`ctsnn.simulate```,
``:class:`~ctsnn.Layer```), which Markdown renders as ``:func:<code>ctsnn.simulate</code>``.
This hook drops the role and, for ``~``, keeps the last component of the name, as Sphinx does.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|exc|obj):<code>(~?)([^<]*)</code>")


def _plain(match: re.Match) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **kwargs) -> str:
    """Replace every ``:role:<code>name</code>`` by ``<code>name</code>``."""
    return ROLE.sub(_plain, html)
