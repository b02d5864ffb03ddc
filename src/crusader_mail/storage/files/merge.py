"""A git merge driver for ``subscribers/subscribers.csv``: the list merges reader by reader.

``.gitattributes`` names it (``subscribers/subscribers.csv merge=crusader-subscribers``) and
``scripts/commit-state.sh`` configures it::

    git config merge.crusader-subscribers.driver "crusader-mail merge-driver %O %A %B"

so an editor's push to the list during a run rebases without a conflict. For each mailbox
(:func:`~crusader_mail.storage.rules.mailbox_key`), with the common ancestor O and the two
sides A and B:

- a side that did not change the reader (same row as O) takes the other side's row, so a
  reader forgotten on one side and unchanged on the other stays forgotten;
- when both changed it, a side that forgot the reader wins (an erasure is never undone);
- else the later change (``updated_at``) wins, with its whole row: the consent record is kept
  as that side wrote it, never spliced from two. Leaving is never undone by a merge: a row
  that left wins over a staying row of the same subscription (``subscribed_at`` no later than
  the leaving), whatever their times; only a new subscription, the reader's own confirmation
  after the leaving, brings a reader back, as :mod:`crusader_mail.storage.rules` says. (The
  consent log beside the list merges as a union of lines: ``.gitattributes``.)

The result is written over A in the list format of :mod:`.list_format` (rows in its order,
through the files store's own row handling). A version that cannot be read raises
:class:`StateError` naming it; the command (``crusader-mail merge-driver``, hidden from the
help) then exits 1 and git reports a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from crusader_mail.clock import SystemClock
from crusader_mail.models import Subscriber
from crusader_mail.storage.files.changes import ListChanges
from crusader_mail.storage.files.list_format import render, scan
from crusader_mail.storage.rows import build
from crusader_mail.storage.rules import LEFT, mailbox_key
from crusader_mail.util.statefile import atomic_write

Readers = dict[str, Subscriber]  # mailbox key -> reader

_NEVER = datetime.min.replace(tzinfo=UTC)


def read_list(path: Path) -> Readers:
    """The readers of one version of the list by mailbox (an empty file: none). Case variants
    of one mailbox on one side become one reader, by the same rule as two sides."""
    readers: Readers = {}
    if path.stat().st_size == 0:  # git's stand-in for a version that does not exist
        return readers
    for _no, _line, fields, status in scan(path, ordered=False):
        reader = build(fields, status)
        key = mailbox_key(reader.email)
        other = readers.get(key)
        readers[key] = reader if other is None else _settle(other, reader)
    return readers


def merge_readers(base: Readers, ours: Readers, theirs: Readers) -> list[Subscriber]:
    """The merged readers (see the module docstring), in no particular order."""
    merged = []
    for key in base.keys() | ours.keys() | theirs.keys():
        old, a, b = base.get(key), ours.get(key), theirs.get(key)
        if a == old:
            chosen = b
        elif b == old or a == b:
            chosen = a
        elif a is None or b is None:
            chosen = None  # forgotten on one side, changed on the other: stays forgotten
        else:
            chosen = _settle(a, b)
        if chosen is not None:
            merged.append(chosen)
    return merged


def _settle(a: Subscriber, b: Subscriber) -> Subscriber:
    """Two changed rows of one reader: leaving stands, else the later change wins."""
    for gone, staying in ((a, b), (b, a)):
        if gone.status in LEFT and staying.status not in LEFT and not _rejoined(staying, gone):
            return gone
    return max(a, b, key=_order)


def _rejoined(staying: Subscriber, gone: Subscriber) -> bool:
    """Did ``staying`` ask to join again after ``gone`` left (a new subscription)?"""
    joined, left = staying.subscribed_at, gone.left_at
    return joined is not None and left is not None and joined > left


def _order(reader: Subscriber) -> tuple[datetime, bool, str]:
    """Later change first; on a tie the row that left, then the address (deterministic)."""
    return (reader.updated_at or _NEVER, reader.status in LEFT, reader.email)


def render_list(readers: Iterable[Subscriber]) -> bytes:
    """The list file holding ``readers``, in the files store's order and format."""
    changes = ListChanges([], SystemClock())
    try:
        for reader in readers:
            changes.put(reader)
        return render(changes.lines())
    finally:
        changes.close()


def merge_files(base: Path, ours: Path, theirs: Path) -> None:
    """Merge the three versions and write the result over ``ours`` (git's ``%A``)."""
    merged = merge_readers(read_list(base), read_list(ours), read_list(theirs))
    atomic_write(ours, render_list(merged))
