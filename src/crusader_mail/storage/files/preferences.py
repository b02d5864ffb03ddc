"""The files store's reader preferences: ``subscribers_dir/preferences.csv``.

::

    # crusader-mail preferences v1
    mailbox,frequency,topics,paused_until
    jane@example.com,weekly,Marketing|Sales,2026-12-21T09:00:00Z

One row per reader who chose something (:class:`~crusader_mail.models.Preferences` other than
the default), by mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`), sorted: the
version line, then a preferences export (:mod:`crusader_mail.storage.rows`, so ``subscribers
import --restore`` takes this file as it is). Most readers have none, so the file stays small
and is read and written whole. It is written only by the roster's writers, under the list's
lock, atomically (temporary file, fsync, rename): a preference change is a unit of change of
the roster (:meth:`SubscriberList.edit`), and a forgotten reader's row goes with their
history. The list file itself is never touched by it. A damaged row raises
:class:`StateError` naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

from crusader_mail.errors import StateError
from crusader_mail.models import Preferences
from crusader_mail.storage.rows import (
    PREFERENCES_HEADER,
    RowProblem,
    format_preferences,
    parse_preferences,
    split_line,
)
from crusader_mail.util.statefile import atomic_write

PREFERENCES_FILE = "preferences.csv"
MARKER = "# crusader-mail preferences v1"


class PreferenceFile:
    """``folder/preferences.csv``: read without a lock (a write replaces it in one rename);
    written by the roster's writers, who hold the list's lock."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / PREFERENCES_FILE

    def load(self) -> dict[str, Preferences]:
        """Every reader's preferences by mailbox key (empty when there is no file)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        lines = text.splitlines()
        if not lines or lines[0] != MARKER:
            raise StateError(f"{self.path}:1: not a crusader-mail preferences file ({MARKER!r})")
        found: dict[str, Preferences] = {}
        for number, line in enumerate(lines[2:], start=3):
            if not line:
                continue
            try:
                key, prefs = parse_preferences(split_line(line))
            except RowProblem as problem:
                raise StateError(f"{self.path}:{number}: {problem}") from None
            found[key] = prefs
        return found

    def save(self, preferences: dict[str, Preferences]) -> None:
        """Replace the file with ``preferences`` (the defaults left out), atomically; with
        none left, the file keeps just its head."""
        rows = [
            format_preferences(key, preferences[key]) + "\n"
            for key in sorted(preferences)
            if not preferences[key].is_default
        ]
        atomic_write(self.path, f"{MARKER}\n{PREFERENCES_HEADER}\n" + "".join(rows))
