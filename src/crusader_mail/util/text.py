"""Plain text from (sanitized or hostile) HTML, and the WordPress-style excerpt.

Contract::

    html_to_text(html) -> str            # visible text, blocks on their own lines, no markup
    inline_text(html) -> str             # the same on one line (titles, authors, terms)
    excerpt(text, words=55) -> str       # first 55 words + " […]"; shorter text stays whole
    first_words(text, count) -> str      # a short fallback title

``html_to_text`` never runs or keeps active content: script, style and the like are dropped with
their contents (nh3 does the tag stripping, so hostile markup cannot confuse it).
"""

from __future__ import annotations

import html
import re

import nh3

EXCERPT_WORDS = 55
MORE = " […]"

# A line break before these tags keeps words of neighbouring blocks apart.
_BLOCK = re.compile(
    r"<(?=/?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|tr|td|th|table|thead|tbody|tfoot|caption|"
    r"blockquote|pre|figure|figcaption|section|article|header|footer|aside|address|nav)\b)",
    re.IGNORECASE,
)
_DROP_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "template", "title", "head"}
_SPACES = re.compile(r"[ \t\f\v\r\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
# What WordPress and others already put at the end of a cut summary.
_TRAILING_MORE = re.compile(
    r"\s*(?:\[\s*(?:…|\.\.\.|&hellip;|&#8230;)\s*\]|…|\.\.\.)\s*$",
)


def html_to_text(markup: str) -> str:
    """The visible text of ``markup``: one line per block, blank lines squeezed."""
    if not markup:
        return ""
    if "<" not in markup and "&" not in markup:
        return _squeeze(markup)
    marked = _BLOCK.sub("\n<", markup)
    stripped = nh3.clean(marked, tags=set(), clean_content_tags=_DROP_WITH_CONTENT)
    return _squeeze(html.unescape(stripped))


def inline_text(markup: str) -> str:
    """Plain text on one line: for titles, names and terms that may carry markup."""
    return " ".join(html_to_text(markup).split())


def _squeeze(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    joined = "\n".join(lines)
    return _BLANK_LINES.sub("\n\n", joined).strip()


def excerpt(text: str, words: int = EXCERPT_WORDS, *, cut: bool = False) -> str:
    """The first ``words`` words of ``text`` followed by `` […]``, as WordPress does.

    Text of ``words`` words or fewer stays whole. A ``[…]``/``...`` the source already put at the
    end is taken off first so it is never doubled; ``cut=True`` says the source text was itself
    cut short, so the marker is kept even when few words remain.
    """
    trimmed = _TRAILING_MORE.sub("", text)
    if trimmed != text:
        cut = True
    parts = trimmed.split()
    if len(parts) > words:
        return " ".join(parts[:words]) + MORE
    joined = " ".join(parts)
    return joined + MORE if cut and joined else joined


def first_words(text: str, count: int = 8) -> str:
    """A short stand-in title: the first ``count`` words, with "…" when there were more."""
    parts = text.split()
    if len(parts) > count:
        return " ".join(parts[:count]) + "…"
    return " ".join(parts)
