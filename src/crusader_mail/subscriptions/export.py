"""Exporting the store's readers (``crusader-mail subscribers export``): the readers with their
full consent record, the consent history, or the readers' preferences, as CSV rows
(:func:`export_rows`, the formats of :mod:`crusader_mail.storage.rows`) written atomically
(:func:`write_export`) or as JSON (:func:`export_json`). ``import --restore``
(:mod:`.restore`) loads each back into either store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path

from crusader_mail.models import Subscriber
from crusader_mail.storage.contract import Roster
from crusader_mail.storage.rows import (
    EVENT_HEADER,
    HEADER,
    PREFERENCES_HEADER,
    format_event,
    format_preferences,
    format_time,
)
from crusader_mail.util.statefile import atomic_writer


class Export(StrEnum):
    """What an export holds; its value names one row."""

    READERS = "reader"
    HISTORY = "event"
    PREFERENCES = "preference"  # one row: a reader's preferences


def export_rows(roster: Roster, what: Export) -> tuple[str, Iterator[str]]:
    """The header line and the rows of ``what``: readers in address order, events in the order
    stored, preferences by mailbox."""
    if what is Export.HISTORY:
        return EVENT_HEADER, map(format_event, roster.history())
    if what is Export.PREFERENCES:
        chosen = sorted(roster.preferences().items())
        return PREFERENCES_HEADER, (format_preferences(key, prefs) for key, prefs in chosen)
    return HEADER, roster.lines()


def write_export(out: Path, header: str, rows: Iterable[str]) -> int:
    """Write ``header`` and ``rows`` to ``out`` atomically; how many rows."""
    count = 0
    with atomic_writer(out) as replacement:
        replacement.text.write(header + "\n")
        for line in rows:
            replacement.text.write(line + "\n")
            count += 1
    return count


def export_json(roster: Roster, what: Export) -> dict[str, object]:
    """``what`` as one JSON object: its ``count`` and its items (readers as ``subscribers
    list --json`` prints them)."""
    if what is Export.HISTORY:
        events = [event.model_dump(mode="json") for event in roster.history()]
        return {"count": len(events), "events": events}
    if what is Export.PREFERENCES:
        chosen = sorted(roster.preferences().items())
        rows = [{"mailbox": key, **prefs.model_dump(mode="json")} for key, prefs in chosen]
        return {"count": len(rows), "preferences": rows}
    return readers_json(roster.iter())


def readers_json(readers: Iterable[Subscriber]) -> dict[str, object]:
    """``readers`` as JSON: their ``count`` and each reader's record (times in ISO 8601)."""
    rows = [_reader_json(sub) for sub in readers]
    return {"count": len(rows), "subscribers": rows}


def _reader_json(sub: Subscriber) -> dict[str, str | None]:
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status.value,
        "subscribed_at": format_time(sub.subscribed_at) or None,
        "subscribed_via": sub.subscribed_via.value if sub.subscribed_via else None,
        "confirmed_at": format_time(sub.confirmed_at) or None,
        "confirmed_via": sub.confirmed_via.value if sub.confirmed_via else None,
        "left_at": format_time(sub.left_at) or None,
        "left_via": sub.left_via.value if sub.left_via else None,
        "ref": sub.ref,
        "updated_at": format_time(sub.updated_at) or None,
    }
