"""Pre-send guards: is a rendered issue safe to send? The composer runs them on every issue.

Contract::

    html_size(html) -> int                      bytes, plus room for every per-reader value
    size_overshoot(html, limit) -> int          bytes over ``limit`` (<= 0: fits)
    find_problems(issue, placed) -> list[str]   every problem but size, one line each
    check_issue(issue, max_html_bytes, placed)  raises GuardError naming the issue and problems

``placed`` says how many of each placeholder the templates put in each part (``"subject"``,
``"preheader"``, ``"HTML"``, ``"text"``); the composer counts them while it renders.

The guards:

- size: the inlined HTML (placeholders counted at ``PLACEHOLDER_ROOM`` bytes each) stays under
  ``compose.max_html_bytes`` (102 KB: Gmail clips longer messages behind "View entire message");
- URLs: every ``href``/``src``/``srcset``/``background``/``action``/``poster`` and every CSS
  ``url()`` is absolute ``http``/``https`` (with a host) or ``mailto:``, or exactly a placeholder;
- tags: no ``script``, ``iframe``, ``form``, ``object``, ``embed`` (nor ``applet``, ``frame``,
  ``frameset``, ``base``, ``meta http-equiv=refresh``), no ``on*`` event attributes;
- Outlook's conditional comments (``<!--[if mso]> ... <![endif]-->``, the templates' tables
  and pictures for Word-rendered Outlook) are welcome, and what they hide from the other
  programs is checked like the rest of the HTML (URLs, tags, handlers);
- template syntax: no ``{{``, ``{%``, ``{#`` and no ``[[token]]`` that is not a known placeholder,
  in the subject, preheader, HTML or text;
- placeholders: each part holds exactly as many of each placeholder as ``placed`` says (a
  placeholder the templates did not put there would give a reader's address or personal link
  to wherever a feed put it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import urlsplit

from crusader_mail.errors import GuardError
from crusader_mail.models import Placeholder, RenderedIssue

PLACEHOLDER_ROOM = 256  # bytes kept free for each per-reader value filled in at send time
FORBIDDEN_TAGS = frozenset(
    {"script", "iframe", "form", "object", "embed", "applet", "frame", "frameset", "base"}
)
URL_ATTRIBUTES = frozenset({"href", "src", "background", "action", "poster", "formaction"})
_PLACEHOLDERS = frozenset(p.value for p in Placeholder)
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")
_TOKEN = re.compile(r"\[\[[^\[\]\s]{1,60}\]\]")
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE)
_CONDITIONAL = re.compile(r"\[if [^\]]*\]>(.*)<!\[endif\]\Z", re.DOTALL | re.IGNORECASE)
MAX_REPORTED = 5

Placed = Mapping[str, Mapping[Placeholder, int]]  # part name -> placeholder -> count


def html_size(html: str) -> int:
    occurrences = sum(html.count(p) for p in _PLACEHOLDERS)
    return len(html.encode("utf-8")) + occurrences * PLACEHOLDER_ROOM


def size_overshoot(html: str, limit: int) -> int:
    return html_size(html) - limit


def url_problem(url: str) -> str | None:
    """Why ``url`` may not be in a newsletter, or None when it is fine."""
    value = url.strip()
    if value in _PLACEHOLDERS:
        return None
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return None if parts.netloc else "has no host"
    if scheme == "mailto" and parts.path:
        return None
    if not scheme:
        return "is not absolute"
    return f"has scheme {scheme!r} (only http, https and mailto)"


class _Inspector(HTMLParser):
    def __init__(self, first_line: int = 1, where: str = "") -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.in_style = False
        self.first_line = first_line  # of the text fed (a comment's starts mid-document)
        self.where = where

    def _add(self, what: str) -> None:
        line, _ = self.getpos()
        self.problems.append(f"HTML line {line + self.first_line - 1}{self.where}: {what}")

    def _check_url(self, where: str, url: str) -> None:
        problem = url_problem(url)
        if problem is not None:
            self._add(f"{where} {_short(url)!r} {problem}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN_TAGS:
            self._add(f"<{tag}> is not allowed in a newsletter")
        self.in_style = tag == "style"
        for name, value in attrs:
            if name.startswith("on"):
                self._add(f"<{tag} {name}> event handler is not allowed")
            if value is None:
                continue
            if name in URL_ATTRIBUTES:
                self._check_url(f"<{tag} {name}>", value)
            elif name == "srcset":
                for candidate in value.split(","):
                    if candidate.strip():
                        self._check_url(f"<{tag} srcset>", candidate.split()[0])
            elif name == "style":
                self._check_css(f"<{tag} style>", value)
            elif tag == "meta" and name == "http-equiv" and value.lower() == "refresh":
                self._add("<meta http-equiv=refresh> is not allowed")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.in_style = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self._check_css("<style>", data)

    def handle_comment(self, data: str) -> None:
        """A conditional comment's HTML (what Outlook reads) is checked like the rest."""
        hidden = _CONDITIONAL.match(data.strip())
        if hidden is None:
            return
        line, _ = self.getpos()
        inner = _Inspector(line + self.first_line - 1, " (in <!--[if ...]>)")
        inner.feed(hidden.group(1))
        inner.close()
        self.problems.extend(inner.problems)

    def _check_css(self, where: str, css: str) -> None:
        for match in _CSS_URL.finditer(css):
            self._check_url(f"{where} url()", match.group(2))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def html_problems(html: str) -> list[str]:
    inspector = _Inspector()
    inspector.feed(html)
    inspector.close()
    return inspector.problems


def syntax_problems(name: str, text: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _TEMPLATE_SYNTAX.finditer(line):
            problems.append(f"{name} line {number}: leftover template syntax {match.group()!r}")
        for match in _TOKEN.finditer(line):
            if match.group() not in _PLACEHOLDERS:
                problems.append(f"{name} line {number}: unknown placeholder {match.group()!r}")
    return problems


def placeholder_problems(name: str, text: str, placed: Mapping[Placeholder, int]) -> list[str]:
    """A line for each placeholder found in ``text`` more (or less) often than ``placed``."""
    problems = []
    for placeholder in Placeholder:
        found, expected = text.count(placeholder.value), placed.get(placeholder, 0)
        if found != expected:
            problems.append(
                f"{name}: {found} {placeholder.value} where the templates put {expected} "
                "(feed text may not add per-reader values)"
            )
    return problems


def find_problems(issue: RenderedIssue, placed: Placed) -> list[str]:
    problems = html_problems(issue.html)
    for name, text in (
        ("subject", issue.subject),
        ("preheader", issue.preheader),
        ("HTML", issue.html),
        ("text", issue.text),
    ):
        problems.extend(syntax_problems(name, text))
        problems.extend(placeholder_problems(name, text, placed.get(name, {})))
    return problems


def check_issue(issue: RenderedIssue, max_html_bytes: int, placed: Placed) -> None:
    """Raise :class:`GuardError` (one line) unless ``issue`` is safe to send."""
    problems = []
    size = html_size(issue.html)
    if size > max_html_bytes:
        problems.append(
            f"HTML is {size} bytes, over compose.max_html_bytes ({max_html_bytes}); "
            "Gmail clips longer messages"
        )
    problems.extend(find_problems(issue, placed))
    if problems:
        more = len(problems) - MAX_REPORTED
        shown = "; ".join(problems[:MAX_REPORTED]) + (f"; and {more} more" if more > 0 else "")
        raise GuardError(f"issue {issue.issue_id} is not safe to send: {shown}")
