"""A mkdocs hook: fenced blocks keep only their language when the site is built.

The pages' fences carry a tag after the language for the example test (`sh server`,
`sh not-tested: <why>`, `json mcp-config`: see docs/development.md); Python-Markdown reads an
info string with words after the language as text, not as a fence, so the tag is dropped here.
GitHub shows the page as written.
"""

from __future__ import annotations

import re
from typing import Any

TAGGED_FENCE = re.compile(r"^(```+)([\w+-]+)[ \t]+\S[^\n]*$", re.MULTILINE)


def without_tags(markdown: str) -> str:
    return TAGGED_FENCE.sub(r"\1\2", markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return without_tags(markdown)
