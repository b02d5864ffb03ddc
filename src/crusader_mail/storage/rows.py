"""A reader's consent record as one CSV row: the export format, and the rows of the files store.

::

    email,name,status,subscribed_at,subscribed_via,confirmed_at,confirmed_via,left_at,left_via,ref,updated_at
    jane@example.com,Jane Doe,active,2026-11-23T09:00:00Z,cli,2026-11-23T09:00:00Z,cli,,,,2026-11-23T09:00:00Z

``email`` is in normal form (never quoted); times are ISO 8601 UTC (``...Z``), empty when
unknown; ``*_via`` is a :class:`Source` value; ``name`` and ``ref`` are quoted when they hold
``,`` ``"`` or a line break. :func:`build` and :func:`parse_line` read rows that were checked
already (the files store checks them while it scans its list).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime

from crusader_mail.models import Source, Status, Subscriber

COLUMNS = (
    "email",
    "name",
    "status",
    "subscribed_at",
    "subscribed_via",
    "confirmed_at",
    "confirmed_via",
    "left_at",
    "left_via",
    "ref",
    "updated_at",
)
HEADER = ",".join(COLUMNS)
STATUSES = {status.value: status for status in Status}
SOURCES = {source.value: source for source in Source}


def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    if any(char in value for char in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def format_row(sub: Subscriber) -> str:
    """One row (without its line end)."""
    return ",".join(
        (
            sub.email,
            _quote(sub.name),
            sub.status.value,
            format_time(sub.subscribed_at),
            sub.subscribed_via.value if sub.subscribed_via else "",
            format_time(sub.confirmed_at),
            sub.confirmed_via.value if sub.confirmed_via else "",
            format_time(sub.left_at),
            sub.left_via.value if sub.left_via else "",
            _quote(sub.ref),
            format_time(sub.updated_at),
        )
    )


def _time(text: str) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _via(text: str) -> Source | None:
    return SOURCES[text] if text else None


def build(fields: list[str], status: Status) -> Subscriber:
    """A :class:`Subscriber` from the fields of a checked row."""
    return Subscriber(
        email=fields[0],
        name=fields[1],
        status=status,
        subscribed_at=_time(fields[3]),
        subscribed_via=_via(fields[4]),
        confirmed_at=_time(fields[5]),
        confirmed_via=_via(fields[6]),
        left_at=_time(fields[7]),
        left_via=_via(fields[8]),
        ref=fields[9],
        updated_at=_time(fields[10]),
    )


def parse_line(line: str) -> Subscriber:
    """A :class:`Subscriber` from a checked row line."""
    fields = line.split(",") if '"' not in line else next(csv.reader([line]))
    return build(fields, STATUSES[fields[2]])
