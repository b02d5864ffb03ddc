"""Plain-text mail: sanitized post HTML -> readable text, and wrapping at 72 columns.

Contract::

    html_to_text(html) -> str     paragraphs, "- " lists, "> " quotes, tables as "a | b" rows,
                                  links as "text [1]" with "[1] URL" lines after the text
    wrap_text(text, width=72) -> str
                                  wraps long lines with a hanging indent; every URL (and
                                  [[placeholder]]) gets a line of its own; lines starting with
                                  four spaces (code) are left alone; CJK text breaks between
                                  characters and counts double width.

Used by the composer for ``newsletter.txt`` (filter ``html_to_text``, then ``wrap_text``).
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

WIDTH = 72
_BLOCK_NAMES = "address article aside blockquote dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tr ul"
_BLOCKS = frozenset(_BLOCK_NAMES.split())
_SKIP = frozenset({"script", "style", "head", "title", "template"})
_URL_RE = re.compile(r"^(https?://|mailto:|\[\[unsubscribe_url\]\])", re.IGNORECASE)
_PREFIX_RE = re.compile(r"^(\s*(?:(?:[-*•]|\d+\.|\[\d+\])\s+)?)")


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.words: list[str] = []
        self.links: list[str] = []
        self.href: list[str | None] = []
        self.link_text: list[list[str]] = []
        self.lists: list[list[int]] = []  # [ordered?, counter]
        self.quote = 0
        self.pre = 0
        self.skip = 0
        self.cells: list[str] | None = None
        self.prefix = ""

    # paragraphs -------------------------------------------------------------------------------
    def flush(self) -> None:
        text = "".join(self.words)
        self.words = []
        if self.cells is not None:
            if text.strip():
                self.cells.append(" ".join(text.split()))
            return
        if self.pre:
            body = "\n".join("    " + line for line in text.strip("\n").splitlines())
        else:
            body = " ".join(text.split())
        if not body.strip():
            return
        quote = "> " * self.quote
        self.paragraphs.append(quote + self.prefix + body)
        self.prefix = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if tag in _BLOCKS:
            self.flush()
        if tag == "br":
            if self.pre:
                self.words.append("\n")
            else:
                self.flush()
        elif tag == "pre":
            self.pre += 1
        elif tag == "blockquote":
            self.quote += 1
        elif tag in ("ul", "ol"):
            self.lists.append([1 if tag == "ol" else 0, 0])
        elif tag == "li":
            indent = "  " * max(len(self.lists) - 1, 0)
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                self.prefix = f"{indent}{self.lists[-1][1]}. "
            else:
                self.prefix = f"{indent}- "
        elif tag == "tr":
            self.cells = []
        elif tag == "hr":
            self.paragraphs.append("* * *")
        elif tag == "img":
            alt = dict(attrs).get("alt") or ""
            if alt.strip():
                self.words.append(f" [image: {alt.strip()}] ")
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_text.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
            return
        if tag == "a" and self.href:
            href = self.href.pop()
            text = "".join(self.link_text.pop()).strip()
            if href and href.lower().startswith(("http://", "https://", "mailto:")):
                if text.rstrip("/") == href.rstrip("/") or not text:
                    self.words.append(" " + href + " ")
                else:
                    self.links.append(href)
                    self.words.append(f" [{len(self.links)}]")
            return
        if tag in ("td", "th") and self.cells is not None:
            self.flush()
            return
        if tag in _BLOCKS:
            if tag == "tr" and self.cells is not None:
                self.flush()
                row = " | ".join(self.cells)
                self.cells = None
                if row:
                    self.paragraphs.append(row)
                return
            self.flush()
        if tag == "pre":
            self.pre = max(self.pre - 1, 0)
        elif tag == "blockquote":
            self.quote = max(self.quote - 1, 0)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.words.append(data)
        for bucket in self.link_text:
            bucket.append(data)

    def result(self) -> str:
        self.flush()
        out = "\n\n".join(self.paragraphs)
        if self.links:
            refs = "\n".join(f"[{n}] {url}" for n, url in enumerate(self.links, 1))
            out += "\n\n" + refs
        return out


def html_to_text(html: str) -> str:
    """Readable plain text of sanitized HTML (see module doc)."""
    maker = _TextMaker()
    maker.feed(str(html))
    maker.close()
    return maker.result()


# --- wrapping ---------------------------------------------------------------------------------


def _char_width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(_char_width(c) for c in text)


def _units(text: str) -> list[tuple[str, bool]]:
    """(piece, space_before) units: words, and single wide characters inside words."""
    units: list[tuple[str, bool]] = []
    for word in text.split(" "):
        if not word:
            continue
        if _URL_RE.match(word) or not any(_char_width(c) == 2 for c in word):
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


def _wrap_line(line: str, width: int) -> list[str]:
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
    for piece, spaced in _units(body):
        if _URL_RE.match(piece):
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


def wrap_text(text: str, width: int = WIDTH) -> str:
    """Wrap every long line (see module doc); at most one blank line in a row."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if line.startswith("    ") or (text_width(line) <= width and not _has_inline_url(line)):
            out.append(line)
        else:
            out.extend(_wrap_line(line, width))
    joined = "\n".join(out)
    joined = re.sub(r"\n{3,}", "\n\n", joined).strip("\n")
    return joined + "\n"


def _has_inline_url(line: str) -> bool:
    words = line.split()
    return len(words) > 1 and any(_URL_RE.match(w) for w in words)
