"""Short plain text: the WordPress-style excerpt, a stand-in title, a one-line message.

::

    excerpt(text, words=55) -> str       # first 55 words + " […]"; shorter text stays whole
    first_words(text, count=8) -> str    # the first words, "…" when there were more
    one_line(value, limit=200) -> str    # str(value) on one line, "…" past ``limit``

All take plain text (see :mod:`crusader_mail.util.html_text` for the text of HTML).
"""

from __future__ import annotations

import re

EXCERPT_WORDS = 55
MORE = " […]"

# What WordPress and others already put at the end of a cut summary.
_TRAILING_MORE = re.compile(
    r"\s*(?:\[\s*(?:…|\.\.\.|&hellip;|&#8230;)\s*\]|…|\.\.\.)\s*$",
)


def excerpt(text: str, words: int = EXCERPT_WORDS) -> str:
    """The first ``words`` words of ``text`` followed by `` […]``, as WordPress does.

    Text of ``words`` words or fewer stays whole. A ``[…]``/``...`` the source already put at the
    end is taken off first so it is never doubled, and put back as `` […]``: that text was cut.
    """
    trimmed = _TRAILING_MORE.sub("", text)
    parts = trimmed.split()
    if len(parts) > words:
        return " ".join(parts[:words]) + MORE
    joined = " ".join(parts)
    return joined + MORE if trimmed != text and joined else joined


def first_words(text: str, count: int = 8) -> str:
    """A short stand-in title: the first ``count`` words, with "…" when there were more."""
    parts = text.split()
    if len(parts) > count:
        return " ".join(parts[:count]) + "…"
    return " ".join(parts)


def one_line(value: object, limit: int = 200) -> str:
    """``str(value)`` with its whitespace squeezed to single spaces, cut to ``limit`` with "…"."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
