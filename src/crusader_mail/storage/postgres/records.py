"""A reader as a row of the table ``readers`` and back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from psycopg import sql

from crusader_mail.models import Source, Subscriber
from crusader_mail.storage import rows
from crusader_mail.storage.rules import mailbox_key

NAMES = rows.COLUMNS  # the reader's fields, the export's columns too
COLUMNS = sql.SQL(", ").join(map(sql.Identifier, NAMES))
"""The columns :func:`reader` reads, in its order."""
STREAM_ROWS = 5000  # rows a server-side cursor fetches at a time

T = TypeVar("T")


def select(clauses: str) -> bytes:
    """``SELECT`` :data:`COLUMNS` ``FROM readers`` and then ``clauses``, as the bytes sent
    (composed once, not at every execution)."""
    return (
        sql.SQL("SELECT {columns} FROM readers {clauses}")
        .format(columns=COLUMNS, clauses=sql.SQL(clauses))
        .as_bytes()
    )


def reader(row: tuple[Any, ...]) -> Subscriber:
    """A :class:`Subscriber` from a row of :data:`COLUMNS`."""
    return Subscriber(
        email=row[0],
        name=row[1],
        status=row[2],
        subscribed_at=row[3],
        subscribed_via=row[4],
        confirmed_at=row[5],
        confirmed_via=row[6],
        left_at=row[7],
        left_via=row[8],
        ref=row[9],
        updated_at=row[10],
    )


def _via(source: Source | None) -> str | None:
    return source.value if source is not None else None


def values(sub: Subscriber, hint: bytes | None) -> tuple[Any, ...]:
    """The row of ``readers`` (every column, in table order) holding ``sub`` with its token
    ``hint``; its old-form hint is left to be filled in when one is looked up (:mod:`.hints`)."""
    return (
        mailbox_key(sub.email),
        sub.email,
        sub.name,
        sub.status.value,
        sub.subscribed_at,
        _via(sub.subscribed_via),
        sub.confirmed_at,
        _via(sub.confirmed_via),
        sub.left_at,
        _via(sub.left_via),
        sub.ref,
        sub.updated_at,
        hint,
        None,
    )


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``."""
    rest = iter(items)
    while chunk := list(islice(rest, size)):
        yield chunk
