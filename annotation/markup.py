"""Markdown written by people (project guidelines) as HTML that is safe to put in a page."""

from __future__ import annotations

import markdown
import nh3


def guidelines_html(text: str) -> str:
    """The guidelines as cleaned HTML: markdown rendered, then every script, handler and unknown tag removed."""
    return nh3.clean(markdown.markdown(text or "_No guidelines yet._"))
