"""Splitting a model's response into steps.

Order of preference: blank-line paragraphs (VisualPRM's convention), explicit "Step N:"
markers, numbered lists, then single lines. A solution longer than `max_steps` is merged
into chunks of ceil(n / max_steps) consecutive pieces, as VisualPRM does for its 12-step cap.
"""

from __future__ import annotations

import math
import re

PARAGRAPH_SEPARATOR = "\n\n"
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_STEP_MARKER = re.compile(r"^\s*(?:\*\*)?\s*Step\s*\d+\s*[:.)]", re.IGNORECASE | re.MULTILINE)
_NUMBERED_ITEM = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)


def _split_before(text: str, pattern: re.Pattern[str]) -> list[str]:
    starts = [match.start() for match in pattern.finditer(text)]
    if len(starts) < 2:
        return []
    bounds = ([0] if starts[0] > 0 else []) + starts + [len(text)]
    pieces = [text[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]
    return [piece for piece in pieces if piece]


def split_steps(response: str, *, max_steps: int | None = 12) -> list[str]:
    """Split `response` into at most `max_steps` non-empty steps (None: no cap)."""
    # Windows line endings would hide blank lines ("\r\n\r\n") from the paragraph split.
    text = response.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return []
    if _BLANK_LINE.search(text):
        pieces = [piece.strip() for piece in _BLANK_LINE.split(text)]
        pieces = [piece for piece in pieces if piece]
        joiner = PARAGRAPH_SEPARATOR
    else:
        pieces = _split_before(text, _STEP_MARKER) or _split_before(text, _NUMBERED_ITEM)
        if not pieces:
            pieces = [line.strip() for line in text.splitlines() if line.strip()]
        joiner = "\n"
    return merge_steps(pieces, max_steps=max_steps, joiner=joiner)


def merge_steps(pieces: list[str], *, max_steps: int | None, joiner: str = PARAGRAPH_SEPARATOR) -> list[str]:
    """Merge consecutive pieces in chunks of ceil(n / max_steps) so at most max_steps remain."""
    if max_steps is not None and max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    if max_steps is None or len(pieces) <= max_steps:
        return list(pieces)
    chunk = math.ceil(len(pieces) / max_steps)
    return [joiner.join(pieces[i : i + chunk]) for i in range(0, len(pieces), chunk)]


def join_steps(steps: list[str]) -> str:
    """Inverse of a blank-line split: the response as VisualPRM400K stores it."""
    return PARAGRAPH_SEPARATOR.join(steps)
