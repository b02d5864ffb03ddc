"""The editor's note: a few words in Markdown at the top of the next issue, in both parts.

::

    read_note(path) -> str             the note in ``note_file`` ("" when absent or blank)
    clear_note(path, used) -> bool     empty the file if it still holds ``used`` (once sent)
    note_html(markdown, base) -> str   safe HTML for the HTML part and the archive page
    note_text(markdown) -> str         the text part's note: the source, paragraphs reflowed

The note comes from ``note_file`` (``notes/next.md``) or from ``run --note``. It is the
editor's own words, never a template: a ``[[placeholder]]`` or ``{{ }}`` in it stays text.
:func:`note_html` renders CommonMark (with tables and strikethrough) by ``markdown-it-py`` with
raw HTML off (``<b>`` in the note shows as typed), then cleans the result with the feeds' nh3
allowlist (:func:`crusader_mail.feeds.sanitize.sanitize_html`: no script, no handler, every
link absolute, relative ones resolved against the blog's address).
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt

from crusader_mail.errors import ConfigError
from crusader_mail.feeds.sanitize import sanitize_html
from crusader_mail.util.statefile import atomic_write

MAX_NOTE = 20_000  # characters: a note, not a post
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BLOCK_START = re.compile(
    r"^ {0,3}(?:[-*+]\s|\d{1,9}[.)]\s|#{1,6}\s|>|\||[-*_](?:\s*[-*_]){2,}\s*$)"
)
_HARD_BREAK = re.compile(r"(?: {2,}|\\)$")


def read_note(path: Path) -> str:
    """The note the file holds, stripped ("" when the file is absent or blank). A file that is
    not UTF-8 text or too long is a :class:`ConfigError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: the editor's note is not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the editor's note: {error.strerror}") from None
    return check_note(text, str(path))


def check_note(text: str, where: str) -> str:
    """``text`` stripped, or :class:`ConfigError` when it is longer than :data:`MAX_NOTE`."""
    note = text.strip()
    if len(note) > MAX_NOTE:
        raise ConfigError(
            f"{where}: the editor's note has {len(note):,} characters, over {MAX_NOTE:,}"
        )
    return note


def clear_note(path: Path, used: str) -> bool:
    """Empty ``path`` when it still holds the note ``used`` (the issue carrying it was sent);
    a file edited since is left for the next issue. True when it was emptied."""
    if not used or read_note(path) != used.strip():
        return False
    atomic_write(path, "")
    return True


def note_html(markdown: str, base: str) -> str:
    """The note as safe HTML (see the module docstring)."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    return sanitize_html(renderer.render(markdown), base)


def note_text(markdown: str) -> str:
    """The note for the text part: the Markdown source with each paragraph's lines joined (the
    composer wraps them at 72 columns). Lists, quotes, headings, tables, hard breaks and code
    keep their lines; code is indented four spaces, which the wrapping leaves alone."""
    out: list[str] = []
    fence = ""
    joinable = False
    for raw in markdown.splitlines():
        line = raw.rstrip("\n")
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            else:
                out.append("    " + line)
            continue
        if opened:
            fence, joinable = opened.group(1), False
            continue
        if not line.strip():
            out.append("")
            joinable = False
        elif line.startswith(("    ", "\t")) and not joinable:
            out.append(line)
        elif joinable and not _BLOCK_START.match(line):
            out[-1] = out[-1] + " " + line.strip()
            joinable = not _HARD_BREAK.search(line)
        else:
            out.append(line.rstrip())
            joinable = not line.lstrip().startswith(("#", "|")) and not _HARD_BREAK.search(line)
    return "\n".join(out).strip("\n")
