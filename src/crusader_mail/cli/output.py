"""How commands print: stdout carries only the result, every diagnostic goes to stderr.

- :func:`console` is the one way commands make a rich console: text is printed as given, never
  read as markup. Feed titles, subjects, mail headers, file names and settings may hold
  ``[brackets]``; rich would take ``[/x]`` for a closing tag and crash (``MarkupError``) or
  restyle the output. Colour goes through ``style=`` instead.
- :func:`warn` prints one ``crusader-mail: warning: …`` line on stderr, so a warning is seen
  with ``--json`` too (stdout then holds exactly one JSON document).
- :func:`emit` prints a command's one JSON document on stdout (``JSON_OPTION``: its ``--json``).
- :func:`short_url` fits a URL in a table column by keeping what tells it apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

import click
from rich.console import Console

from crusader_mail.util.masking import mask_url


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=soft_wrap, markup=False, highlight=False)


JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout."
)


def emit(data: Mapping[str, object]) -> None:
    """``data`` as one JSON document on stdout (addresses as the command's text shows them)."""
    click.echo(json.dumps(data, ensure_ascii=False))


def warn(message: str, kind: str = "warning") -> None:
    """One ``crusader-mail: warning: …`` (or ``note``) line on stderr."""
    click.echo(f"crusader-mail: {kind}: {message}", err=True)


def short_url(url: str, width: int) -> str:
    """``url`` masked (:func:`~crusader_mail.util.masking.mask_url`) and, when longer than
    ``width``, shortened where it does not tell feeds apart: first the scheme, then the query
    (``?…``), then the middle of the path, so the host and the path's end stay
    (``127.0.0.1:8902/…two/rss.xml``); what has no host (a local path) loses its middle."""
    shown = mask_url(url)
    if len(shown) <= width:
        return shown
    parts = urlsplit(shown)
    if parts.scheme and parts.netloc:
        host = parts.netloc.rpartition("@")[2]
        after = shown.split(parts.netloc, 1)[1]
        path = parts.path if after.startswith(parts.path) else after
        extra = after[len(path) :]  # ?query#fragment
        suffix = "?…" if extra else ""
        for whole in (host + after, host + path + suffix):
            if len(whole) <= width:
                return whole
        room = width - len(host) - 2 - len(suffix)  # 2: "/…"
        if room >= min(6, len(path)):
            return f"{host}/…{path[-room:]}{suffix}"
    head = (width - 1) // 2
    return f"{shown[:head]}…{shown[len(shown) - (width - 1 - head) :]}"


FEED_COLUMN_MIN = 24
NOTE_COLUMN = 20  # the last column (errors, notes) folds its text to this width
_BORDERS = 16  # five columns: six rules and a space either side of each cell


def feed_column_width(console_width: int, urls: list[str], others: list[int]) -> int:
    """How wide a table's feed column may be: what its longest URL needs, at most what the
    other columns (``others``: their widths, the last one folding at :data:`NOTE_COLUMN`)
    leave, and never under :data:`FEED_COLUMN_MIN`."""
    longest = max((len(mask_url(url)) for url in urls), default=FEED_COLUMN_MIN)
    *fixed, last = others or [0]
    room = console_width - _BORDERS - sum(fixed) - min(last, NOTE_COLUMN)
    return max(FEED_COLUMN_MIN, min(longest, room))
