"""The newsletter's text part: wrapping at 72 columns.

``wrap_text(text, width=72, links=LINKS)`` (``LINKS``: the link placeholders) wraps long lines: a list item's
next lines are indented under its text, a quote's start with ``> `` again; every URL (and each
of ``links``, words that stand for one) gets a line of its own; lines starting with four spaces (code) are left alone; CJK text breaks between
characters and counts double width. At most one blank line in a row.

The composer renders ``newsletter.txt`` (whose posts go through the ``html_to_text`` filter,
:func:`crusader_mail.util.html_text.mail_text`) and wraps the result with :func:`wrap_text`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from crusader_mail.models import Placeholder

WIDTH = 72
LINKS = (Placeholder.UNSUBSCRIBE_URL.value, Placeholder.PREFERENCES_URL.value)
_PREFIX_RE = re.compile(r"^(\s*(?:(?:[-*•]|\d+\.|\[\d+\])\s+)?)")


def _char_width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(_char_width(c) for c in text)


def _url_pattern(links: Sequence[str]) -> re.Pattern[str]:
    words = "".join("|" + re.escape(link) for link in links)
    return re.compile(rf"^(https?://|mailto:{words})", re.IGNORECASE)


def _units(text: str, url: re.Pattern[str]) -> list[tuple[str, bool]]:
    """(piece, space_before) units: words, and single wide characters inside words."""
    units: list[tuple[str, bool]] = []
    for word in text.split(" "):
        if not word:
            continue
        if url.match(word) or not any(_char_width(c) == 2 for c in word):
            units.append((word, True))
            continue
        first = True
        buffer = ""
        for char in word:
            if _char_width(char) == 2:
                if buffer:
                    units.append((buffer, first))
                    first = False
                    buffer = ""
                units.append((char, first))
                first = False
            else:
                buffer += char
        if buffer:
            units.append((buffer, first))
    return units


def _wrap_line(line: str, width: int, url: re.Pattern[str]) -> list[str]:
    match = _PREFIX_RE.match(line)
    first_prefix = match.group(1) if match else ""
    quote = re.match(r"^((?:> )+)", line)
    if quote:
        first_prefix = quote.group(1)
    hang = first_prefix if quote else " " * len(first_prefix)
    body = line[len(first_prefix) :]
    lines: list[str] = []
    current = first_prefix
    empty = True
    for piece, spaced in _units(body, url):
        if url.match(piece):
            if not empty:
                lines.append(current.rstrip())
            lines.append((first_prefix if not lines and empty else hang) + piece)
            current, empty = hang, True
            continue
        joiner = " " if spaced and not empty else ""
        if not empty and text_width(current + joiner + piece) > width:
            lines.append(current.rstrip())
            current, empty, joiner = hang, True, ""
        current += joiner + piece
        empty = False
    if not empty:
        lines.append(current.rstrip())
    return lines or [line.rstrip()]


def wrap_text(text: str, width: int = WIDTH, links: Sequence[str] = LINKS) -> str:
    """Wrap every long line (see module doc); at most one blank line in a row."""
    url = _url_pattern(links)
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if line.startswith("    ") or (
            text_width(line) <= width and not _has_inline_url(line, url)
        ):
            out.append(line)
        else:
            out.extend(_wrap_line(line, width, url))
    joined = "\n".join(out)
    joined = re.sub(r"\n{3,}", "\n\n", joined).strip("\n")
    return joined + "\n"


def _has_inline_url(line: str, url: re.Pattern[str]) -> bool:
    words = line.split()
    return len(words) > 1 and any(url.match(w) for w in words)
