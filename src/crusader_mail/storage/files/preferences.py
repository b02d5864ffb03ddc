"""The files store's reader preferences: ``subscribers_dir/preferences.csv``.

::

    # crusader-mail preferences v1
    mailbox,frequency,topics,paused_until
    jane@example.com,weekly,Marketing|Sales,2026-12-21T09:00:00Z

One row per reader who chose something (:class:`~crusader_mail.models.Preferences` other than
the default), by mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`), sorted; most
readers have none, so the file stays small and is read and written whole. It is written only
by the roster's writers, under the list's lock, atomically (temporary file, fsync, rename):
a preference change is a unit of change of the roster (:meth:`SubscriberList.edit`), and a
forgotten reader's row goes with their history. The list file itself is never touched by it.
A damaged row raises :class:`StateError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from crusader_mail.errors import StateError
from crusader_mail.models import Frequency, Preferences
from crusader_mail.storage.rows import format_time
from crusader_mail.util.statefile import atomic_write

PREFERENCES_FILE = "preferences.csv"
MARKER = "# crusader-mail preferences v1"
HEADER = ("mailbox", "frequency", "topics", "paused_until")
TOPIC_SEPARATOR = "|"


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
        for number, row in enumerate(csv.reader(lines[2:]), start=3):
            if not row:
                continue
            key, prefs = self._parse(row, number)
            found[key] = prefs
        return found

    def _parse(self, row: list[str], number: int) -> tuple[str, Preferences]:
        where = f"{self.path}:{number}"
        if len(row) != len(HEADER):
            raise StateError(f"{where}: {len(row)} fields, expected {len(HEADER)}")
        key, frequency, topics, paused = row
        if not key or key != key.lower() or "@" not in key:
            raise StateError(f"{where}: the mailbox must be a lowercased address")
        try:
            prefs = Preferences(
                frequency=Frequency(frequency) if frequency else None,
                topics=tuple(topics.split(TOPIC_SEPARATOR)) if topics else (),
                paused_until=datetime.fromisoformat(paused) if paused else None,
            )
        except (ValueError, ValidationError) as error:
            problem = str(error).splitlines()[0][:120]
            raise StateError(f"{where}: {problem}") from None
        if prefs.paused_until is not None and prefs.paused_until.tzinfo is None:
            raise StateError(f"{where}: paused_until must be UTC (end it with Z)")
        return key, prefs

    def save(self, preferences: dict[str, Preferences]) -> None:
        """Replace the file with ``preferences`` (the defaults left out), atomically; with
        none left, the file keeps just its head."""
        out = io.StringIO()
        out.write(MARKER + "\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for key in sorted(preferences):
            prefs = preferences[key]
            if prefs.is_default:
                continue
            writer.writerow(
                (
                    key,
                    prefs.frequency.value if prefs.frequency is not None else "",
                    TOPIC_SEPARATOR.join(prefs.topics),
                    format_time(prefs.paused_until),
                )
            )
        atomic_write(self.path, out.getvalue())
