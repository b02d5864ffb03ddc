"""Changes made one reader at a time by the bulk writers of :mod:`.subscribers` (an import,
a restore, the suppression sync): each mailbox's change runs on a roster of that one row
(:func:`change_row`), so the roster's rules and consent stamps are those of ``edit``; what it
made of the row (:class:`RowDone`) is spliced or streamed into the new list, and its events and
forgetting (:class:`Done`) recorded once the list is stored."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crusader_mail.clock import Clock
from crusader_mail.errors import SubscriberError
from crusader_mail.models import ConsentEvent, Subscriber
from crusader_mail.storage.contract import BulkReport, RosterChanges, RowChange
from crusader_mail.storage.files.changes import ListChanges, OneRow
from crusader_mail.storage.files.list_format import row_email
from crusader_mail.storage.rows import AddressCheck
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.masking import mask_email
from crusader_mail.util.spool import Record


def groups(incoming: Iterable[Record]) -> Iterator[tuple[str, str, list[Any]]]:
    """(mailbox key, first address given, items in the order given) of each mailbox."""
    key: str | None = None
    email = ""
    items: list[Any] = []
    for record_key, _seq, record_email, item in incoming:
        if record_key != key:
            if key is not None:
                yield key, email, items
            key, email, items = record_key, record_email, []
        items.append(item)
    if key is not None:
        yield key, email, items


def numbered(given: Iterable[tuple[str, str, Any]]) -> Iterator[Record]:
    """(mailbox key, sequence number, address, item): sorted, the order given is kept."""
    return ((key, seq, email, item) for seq, (key, email, item) in enumerate(given))


class Normalized(AddressCheck):
    """Addresses in normal form already (what :meth:`SubscriberList.add_many` is given)."""

    def normal(self, raw: str) -> str:
        return raw


def in_order(records: Iterable[Record]) -> Iterator[Record]:
    """``records`` as they come, checked to come by mailbox key (as they were promised)."""
    previous = ""
    for record in records:
        if record[0] < previous:
            raise SubscriberError("readers promised in mailbox order came out of order")
        previous = record[0]
        yield record


def change_of(apply: Callable[[RosterChanges, list[Any]], None], items: list[Any]) -> RowChange:
    """The change of one mailbox: ``apply`` with what was given for it."""
    return lambda changes, _email: apply(changes, items)


def put_reader(changes: RosterChanges, reader: Subscriber) -> None:
    """Restore ``reader`` as given (``changes`` are this store's :class:`ListChanges`)."""
    if not isinstance(changes, ListChanges):
        raise TypeError("a restore needs the files store's changes")
    changes.put(reader)


@dataclass
class Done:
    """What a stored change leaves for the consent log and the mail queue."""

    events: list[ConsentEvent] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, rows: Iterable[RowDone]) -> Done:
        done = cls()
        for row in rows:
            done.events += row.events
            done.forgotten += row.forgotten
        return done


@dataclass
class RowDone:
    """What a bulk change made of one reader: their new row lines (``[]``: forgotten), and the
    events and forgetting to record once the list is stored."""

    lines: list[str]
    events: list[ConsentEvent]
    forgotten: list[str]


def change_row(
    line: str | None,
    email: str,
    change: RowChange,
    clock: Clock,
    check: AddressCheck | None = None,
) -> RowDone | None:
    """Run ``change`` on a roster of one row (``None``: of no row, for a new reader); what it
    made of the row, or ``None`` when it changed nothing."""
    roster = ListChanges(OneRow(line), clock, check=check)
    try:
        change(roster, email)
        if not roster.changed:
            return None
        changes = roster.changes()
        row = RowDone([new for _key, new in changes if new], roster.events, roster.forgotten)
    finally:
        roster.close()
    if any(key != mailbox_key(email) for key, _new in changes):
        raise SubscriberError(
            f"a bulk update offered {mask_email(email)} and changed another address: "
            "it may change only the reader it is given"
        )
    return row


def update_in_memory(
    roster: ListChanges,
    keys: Collection[str],
    change: RowChange,
    key_of: Callable[[str], str],
    clock: Clock,
    done: dict[str, RowDone | None],
) -> tuple[BulkReport, list[RowDone]]:
    """:meth:`SubscriberList.update_many` on a loaded roster (a file that needed sorting),
    each reader changed exactly as the streaming pass changes them (a row it changed already,
    in ``done``, is not changed again); the report and what was made of the changed rows."""
    report = BulkReport()
    applied: list[RowDone] = []
    found = [line for line in roster.lines() if key_of(row_email(line)) in keys]
    for line in found:
        email = row_email(line)
        report.matched += 1
        if line not in done:
            done[line] = change_row(line, email, change, clock)
        row = done[line]
        if row is not None:
            report.changed += 1
            roster.take_row(mailbox_key(email), row.lines)
            applied.append(row)
    return report, applied
