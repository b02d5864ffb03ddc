"""HTML to plain text: one parser, two layouts.

::

    html_to_text(markup) -> str                       visible text, one line per block
    inline_text(markup) -> str                        the same on one line
    html_words(markup, *, skip_code=False) -> list    its words (code left out on request)
    mail_text(markup) -> str                          the layout of a newsletter's text part

The parser is the standard library's :class:`html.parser.HTMLParser`, reading the way an HTML5
parser does where it matters for text: character references are decoded, CR LF becomes LF, the
content of ``script``, ``style``, ``iframe``, ``object``, ``template`` and ``title`` is left out,
and an unfinished tag at the very end (HTML cut short) is ignored. It only reads: whatever the
markup, the result is plain text.

``mail_text`` lays sanitized HTML out for reading in a mail client: blank lines between
paragraphs, ``- `` and ``1. `` list items (nested ones indented), ``> `` quotes, ``pre`` indented
four spaces, table rows as ``a | b``, ``hr`` as ``* * *``, images as ``[image: alt]``, and links as
``text [1]`` with ``[1] URL`` lines after the text (a link without text, or whose text is its URL,
is followed by its URL inline instead).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

Attrs = list[tuple[str, str | None]]

# The content of these never shows: left out with everything inside.
_DROP = frozenset({"script", "style", "iframe", "object", "template", "title"})
_DROP_CODE = _DROP | {"pre", "code"}
# Tags that start a new line in html_to_text: the words of neighbouring blocks stay apart.
_LINE_TAGS = frozenset(
    """p div br hr li ul ol dl dt dd h1 h2 h3 h4 h5 h6 tr td th table thead tbody tfoot caption
    blockquote pre figure figcaption section article header footer aside address nav""".split()  # noqa: SIM905
)
# Tags that end a paragraph in mail_text.
_BLOCKS = frozenset(
    """address article aside blockquote dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6
    header hr li main nav ol p pre section table tr ul""".split()  # noqa: SIM905
)
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_UNFINISHED = re.compile(r"<[A-Za-z/!?]")
_SPACES = re.compile(r"[ \t\f\v\r\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class _Layout:
    """What a layout does with what the parser reads: tags opening and closing, and text."""

    def start(self, tag: str, attrs: Attrs) -> None:
        pass

    def end(self, tag: str) -> None:
        pass

    def empty(self, tag: str, attrs: Attrs) -> None:
        """A self-closing tag (``<br/>``)."""
        self.start(tag, attrs)
        self.end(tag)

    def text(self, data: str) -> None:
        pass


class _Parser(HTMLParser):
    def __init__(self, layout: _Layout, drop: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.layout = layout
        self.drop = drop
        self.dropping = 0  # depth inside elements whose content is left out

    def handle_starttag(self, tag: str, attrs: Attrs) -> None:
        if tag in self.drop:
            self.dropping += 1
        elif not self.dropping:
            self.layout.start(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: Attrs) -> None:
        if tag in self.drop:  # as in HTML5, "/>" does not close <script/> or <iframe/>
            self.dropping += 1
        elif not self.dropping:
            self.layout.empty(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.drop:
            self.dropping = max(self.dropping - 1, 0)
        elif not self.dropping:
            self.layout.end(tag)

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.layout.text(data)


def _read(markup: str, layout: _Layout, drop: frozenset[str] = _DROP) -> None:
    parser = _Parser(layout, drop)
    parser.feed(str(markup).replace("\r\n", "\n").replace("\r", "\n"))
    if not parser.cdata_elem and _UNFINISHED.match(parser.rawdata):
        parser.rawdata = ""  # a tag cut off by the end of the input: not text
    parser.close()


# --- lines ------------------------------------------------------------------------------------


class _Lines(_Layout):
    def __init__(self) -> None:
        self.parts: list[str] = []

    def start(self, tag: str, attrs: Attrs) -> None:
        if tag in _LINE_TAGS:
            self.parts.append("\n")

    def end(self, tag: str) -> None:
        self.start(tag, [])

    def empty(self, tag: str, attrs: Attrs) -> None:
        self.start(tag, attrs)

    def text(self, data: str) -> None:
        self.parts.append(data)

    def joined(self) -> str:
        return "".join(self.parts)


def _squeeze(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def html_to_text(markup: str) -> str:
    """The visible text of ``markup``: one line per block, spaces and blank lines squeezed."""
    if not markup:
        return ""
    if "<" not in markup and "&" not in markup:
        return _squeeze(markup)
    lines = _Lines()
    _read(markup, lines)
    return _squeeze(lines.joined())


def html_words(markup: str, *, skip_code: bool = False) -> list[str]:
    """The words of the visible text of ``markup``; ``skip_code=True`` also leaves out ``pre``
    and ``code`` (for judging what a post is about)."""
    lines = _Lines()
    _read(markup, lines, _DROP_CODE if skip_code else _DROP)
    return lines.joined().split()


def inline_text(markup: str) -> str:
    """Plain text on one line: for titles, names and terms that may carry markup."""
    return " ".join(html_to_text(markup).split())


# --- the text part of a newsletter ------------------------------------------------------------


class _MailText(_Layout):
    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.words: list[str] = []
        self.links: list[str] = []
        self.href: list[str | None] = []
        self.link_text: list[list[str]] = []
        self.lists: list[list[int]] = []  # [ordered?, counter]
        self.quote = 0
        self.pre = 0
        self.cells: list[str] | None = None
        self.prefix = ""

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

    def start(self, tag: str, attrs: Attrs) -> None:
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

    def end(self, tag: str) -> None:
        if tag == "a" and self.href:
            self._end_link()
        elif tag in ("td", "th") and self.cells is not None:
            self.flush()
        elif tag == "tr" and self.cells is not None:
            self.flush()
            row = " | ".join(self.cells)
            self.cells = None
            if row:
                self.paragraphs.append(row)
        else:
            if tag in _BLOCKS:
                self.flush()
            if tag == "pre":
                self.pre = max(self.pre - 1, 0)
            elif tag == "blockquote":
                self.quote = max(self.quote - 1, 0)
            elif tag in ("ul", "ol") and self.lists:
                self.lists.pop()

    def _end_link(self) -> None:
        href = self.href.pop()
        text = "".join(self.link_text.pop()).strip()
        if href and href.lower().startswith(_LINK_SCHEMES):
            if text.rstrip("/") == href.rstrip("/") or not text:
                self.words.append(" " + href + " ")
            else:
                self.links.append(href)
                self.words.append(f" [{len(self.links)}]")

    def text(self, data: str) -> None:
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


def mail_text(markup: str) -> str:
    """Sanitized HTML laid out as the text part of a newsletter (see the module doc)."""
    layout = _MailText()
    _read(markup, layout)
    return layout.result()
