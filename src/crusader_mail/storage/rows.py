"""A reader's consent record as one CSV row: the export format, and the rows of the files store;
one event of a consent history as one CSV row (``export --history``, the files store's log);
and a reader's preferences as one (``export --preferences``, the files store's preferences).

::

    email,name,status,subscribed_at,subscribed_via,confirmed_at,confirmed_via,left_at,left_via,ref,updated_at
    jane@example.com,Jane Doe,active,2026-11-23T09:00:00Z,cli,2026-11-23T09:00:00Z,cli,,,,2026-11-23T09:00:00Z

``email`` is in normal form (never quoted), one row per mailbox
(:func:`~crusader_mail.storage.rules.mailbox_key`), rows in mailbox-key order; times are ISO
8601 UTC (``...Z``), empty when unknown; ``*_via`` is a :class:`Source` value; ``name`` and
``ref`` are quoted when they hold ``,`` ``"`` or a line break.

An export (``crusader-mail subscribers export``) is the header line then every row, UTF-8 with
``\n`` line ends; ``subscribers import --restore`` loads one into any store unchanged. A history export is
the line :data:`EVENT_HEADER` then one :func:`format_event` row per event::

    at,email,action,status,via,ref
    2026-11-23T09:00:00Z,jane@example.com,request,pending,email,<m1@reader.example>

A preferences export (``export --preferences``, and the files store's ``preferences.csv``
after its version line) is the line :data:`PREFERENCES_HEADER` then one
:func:`format_preferences` row per reader who chose something, in mailbox-key order::

    mailbox,frequency,topics,paused_until
    jane@example.com,weekly,Marketing|Sales,2026-12-21T09:00:00Z

:func:`split_line` and :func:`check_fields` check a row (:class:`RowProblem` says what is
wrong, the caller says where); :func:`build` and :func:`parse_line` read rows checked already.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime

from crusader_mail.models import (
    ConsentAction,
    ConsentEvent,
    Frequency,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage.rules import normal_or_none, normalize_email
from crusader_mail.util.masking import mask_email

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
    """``2026-11-23T09:00:00Z`` (UTC, whole seconds), ``""`` for ``None``."""
    if value is None:
        return ""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat()[:19] + "Z"


def _quote(value: str) -> str:
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def format_row(sub: Subscriber) -> str:
    """One row (without its line end). The statuses and sources are ``StrEnum`` members:
    strings already."""
    return ",".join(
        (
            sub.email,
            _quote(sub.name),
            sub.status,
            format_time(sub.subscribed_at),
            sub.subscribed_via or "",
            format_time(sub.confirmed_at),
            sub.confirmed_via or "",
            format_time(sub.left_at),
            sub.left_via or "",
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
    """A :class:`Subscriber` from the fields of a checked row (every field is of its type
    already: the model is made without validating them again)."""
    return Subscriber.model_construct(
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


def status_of(line: str) -> Status:
    """The status of a checked row line, read without building the reader: the third field
    (the address is never quoted; a quoted name is parsed properly)."""
    if '"' in line:
        return STATUSES[next(csv.reader([line]))[2]]
    return STATUSES[line.split(",", 3)[2]]


# --- checking a row ---------------------------------------------------------------------------

_TIME_COLUMNS = (3, 5, 7, 10)
_VIA_COLUMNS = (4, 6, 8)
_VIAS = frozenset(("", *SOURCES))
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ASCII_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")


class RowProblem(ValueError):
    """What is wrong with one row (``str`` is the message, without the file and line)."""


class AddressCheck:
    """Is a stored address in normal form? Plain ASCII local parts take a fast path that asks
    email-validator once per domain; anything else is validated whole."""

    def __init__(self) -> None:
        self._domains: dict[str, bool] = {}

    def is_normal(self, address: str) -> bool:
        local, at, domain = address.rpartition("@")
        if at and address.isascii() and self._plain(local, domain):
            return self._domain(domain)
        return normal_or_none(address) == address

    def normal(self, raw: str) -> str:
        """:func:`~crusader_mail.storage.rules.normalize_email` of ``raw``, by the fast path
        when ``raw`` is a plain ASCII address whose lowercased domain is in normal form."""
        text = raw.strip()
        local, at, domain = text.rpartition("@")
        if at and text.isascii():
            domain = domain.lower()
            if self._plain(local, domain) and self._domain(domain):
                return f"{local}@{domain}"
        return normalize_email(raw)

    @staticmethod
    def _plain(local: str, domain: str) -> bool:
        return (
            len(local) <= 64 and len(local) + len(domain) < 254 and bool(_ASCII_LOCAL.match(local))
        )

    def _domain(self, domain: str) -> bool:
        known = self._domains.get(domain)
        if known is None:
            known = normal_or_none(f"a@{domain}") == f"a@{domain}"
            if len(self._domains) < 100_000:
                self._domains[domain] = known
        return known


def split_line(line: str) -> list[str]:
    """The fields of a row line; :class:`RowProblem` for broken quoting."""
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as error:
        raise RowProblem(f"broken CSV quoting ({error})") from None


def check_fields(fields: list[str], check: AddressCheck) -> Status:
    """The status of a row whose every field is as the format says; :class:`RowProblem`
    naming the first field that is not (addresses masked). A time that the row repeats (a
    reader added and confirmed at once) is read once."""
    if len(fields) != len(COLUMNS):
        raise RowProblem(f"{len(fields)} columns, expected {len(COLUMNS)} ({HEADER})")
    status = STATUSES.get(fields[2])
    if status is None:
        raise RowProblem(f"status {fields[2][:40]!r} is not one of " + ", ".join(STATUSES))
    email = fields[0]
    if not check.is_normal(email):
        normal = normal_or_none(email)
        hint = f" (write it as {mask_email(normal)})" if normal else ""
        raise RowProblem(f"{mask_email(email)} is not a valid address in normal form{hint}")
    if fields[4] not in _VIAS or fields[6] not in _VIAS or fields[8] not in _VIAS:
        index = next(index for index in _VIA_COLUMNS if fields[index] not in _VIAS)
        raise RowProblem(
            f"{COLUMNS[index]} {fields[index][:40]!r} is not one of " + ", ".join(SOURCES)
        )
    good = ""
    for index in _TIME_COLUMNS:
        text = fields[index]
        if text and text != good:
            _check_time(text, COLUMNS[index])
            good = text
    return status


def _check_time(text: str, column: str) -> None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise RowProblem(f"{column} {text[:40]!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise RowProblem(f"{column} {text!r} has no timezone (write UTC, ending in Z)")


# --- consent history events -------------------------------------------------------------------

EVENT_COLUMNS = ("at", "email", "action", "status", "via", "ref")
EVENT_HEADER = ",".join(EVENT_COLUMNS)
ACTIONS = {action.value: action for action in ConsentAction}


def format_event(event: ConsentEvent) -> str:
    """One history row (without its line end)."""
    return ",".join(
        (
            format_time(event.at),
            event.email,
            event.action.value,
            event.status.value,
            event.via.value,
            _quote(event.ref),
        )
    )


def parse_event(line: str, check: AddressCheck) -> ConsentEvent:
    """The event of a history row; :class:`RowProblem` naming the first field that is wrong."""
    fields = split_line(line)
    if len(fields) != len(EVENT_COLUMNS):
        raise RowProblem(f"{len(fields)} columns, expected {len(EVENT_COLUMNS)} ({EVENT_HEADER})")
    at, email, action, status, via, ref = fields
    _check_time(at, "at")
    if not check.is_normal(email):
        raise RowProblem(f"{mask_email(email)} is not a valid address in normal form")
    if action not in ACTIONS:
        raise RowProblem(f"action {action[:40]!r} is not one of " + ", ".join(ACTIONS))
    if status not in STATUSES:
        raise RowProblem(f"status {status[:40]!r} is not one of " + ", ".join(STATUSES))
    if via not in SOURCES:
        raise RowProblem(f"via {via[:40]!r} is not one of " + ", ".join(SOURCES))
    return ConsentEvent(
        at=datetime.fromisoformat(at).astimezone(UTC),
        email=email,
        action=ACTIONS[action],
        status=STATUSES[status],
        via=SOURCES[via],
        ref=ref,
    )


# --- preferences ------------------------------------------------------------------------------

PREFERENCES_COLUMNS = ("mailbox", "frequency", "topics", "paused_until")
PREFERENCES_HEADER = ",".join(PREFERENCES_COLUMNS)
TOPIC_SEPARATOR = "|"
FREQUENCIES = {frequency.value: frequency for frequency in Frequency}


def format_preferences(mailbox: str, prefs: Preferences) -> str:
    """One preferences row (without its line end): the mailbox key, the frequency ("" for the
    editor's cadence), the topics joined by ``|``, the end of the pause."""
    return ",".join(
        (
            mailbox,
            prefs.frequency.value if prefs.frequency is not None else "",
            _quote(TOPIC_SEPARATOR.join(prefs.topics)),
            format_time(prefs.paused_until),
        )
    )


def parse_preferences(fields: list[str]) -> tuple[str, Preferences]:
    """The mailbox key and preferences of a preferences row's fields; :class:`RowProblem`
    naming the first field that is wrong (addresses masked)."""
    if len(fields) != len(PREFERENCES_COLUMNS):
        raise RowProblem(
            f"{len(fields)} columns, expected {len(PREFERENCES_COLUMNS)} ({PREFERENCES_HEADER})"
        )
    mailbox, frequency, topics, paused = fields
    if not mailbox or mailbox != mailbox.lower() or "@" not in mailbox:
        raise RowProblem(f"mailbox {mask_email(mailbox)!r} is not a lowercased address")
    if frequency and frequency not in FREQUENCIES:
        raise RowProblem(f"frequency {frequency[:40]!r} is not one of " + ", ".join(FREQUENCIES))
    if paused:
        _check_time(paused, "paused_until")
    return mailbox, Preferences(
        frequency=FREQUENCIES[frequency] if frequency else None,
        topics=tuple(topics.split(TOPIC_SEPARATOR)) if topics else (),
        paused_until=_time(paused),
    )
