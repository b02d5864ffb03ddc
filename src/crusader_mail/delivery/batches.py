"""The readers of a send made into ready-to-send batches (:class:`Producer`, a thread a few
batches ahead of the requests), each mailbox once (:class:`Mailboxes`), with what was left out
and why counted (:class:`Tally`); and how a send is followed (:class:`SendProgress`).
:mod:`.engine` sends the batches."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Protocol

from crusader_mail.delivery.audience import EVERYONE, Audience
from crusader_mail.delivery.body import BodyBuilder, RequestBody
from crusader_mail.models import Status
from crusader_mail.settings import SendGridSettings
from crusader_mail.storage.contract import Ledger
from crusader_mail.storage.rules import mailbox_key


class Readers(Protocol):
    """What a send needs of the list (:class:`~crusader_mail.storage.contract.Roster`)."""

    def counts(self) -> dict[Status, int]: ...

    def recipients(self) -> Iterator[tuple[str, str]]: ...


class SendProgress(Protocol):
    """Follows a send: ``start`` once with the number of active readers, ``advance`` as readers
    are done (sent, or skipped as accepted or in doubt before), ``stop`` at the end. Calls come
    one at a time, from the sending thread and the batch producer."""

    def start(self, total: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Batch:
    number: int
    readers: list[int]  # ledger hashes (none in a dry run without a ledger)
    body: RequestBody

    @property
    def size(self) -> int:
        return self.body.readers


@dataclass
class Tally:
    # written by the producer thread only
    already: int = 0  # accepted in an earlier run
    uncertain: int = 0  # in a batch in doubt from an earlier run
    duplicates: int = 0  # a second reader of a mailbox met before
    left_out: dict[str, int] = field(default_factory=dict)  # not in the audience, by reason
    outside: int = 0  # not among the only readers of an issue made for a group
    # written by the sending thread only
    delivered: int = 0
    requests: int = 0
    lost: int = 0  # in batches in flight when the send stopped: in doubt now


class Shown:
    """Passes progress on, one call at a time (two threads advance it)."""

    def __init__(self, progress: SendProgress | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()

    def advance(self, count: int) -> None:
        if self._progress is not None:
            with self._lock:
                self._progress.advance(count)


@contextmanager
def shown_progress(progress: SendProgress | None, total: int) -> Iterator[Shown]:
    if progress is None:
        yield Shown(None)
        return
    progress.start(total)
    try:
        yield Shown(progress)
    finally:
        progress.stop()


class _Done:
    pass


_DONE = _Done()


class Producer:
    """Streams readers into ready-to-send batches on a thread, ``ahead`` batches ahead."""

    def __init__(
        self,
        readers: Readers,
        builder: BodyBuilder,
        ledger: Ledger | None,
        sg: SendGridSettings,
        ahead: int,
        tally: Tally,
        shown: Shown,
        audience: Audience = EVERYONE,
    ) -> None:
        self.readers = readers
        self.audience = audience
        self.builder = builder
        self.ledger = ledger
        self.size = sg.batch_size
        self.tally = tally
        self.shown = shown
        self.queue: queue.Queue[Batch | BaseException | _Done] = queue.Queue(ahead)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="crusader-mail-batches", daemon=True)

    def __enter__(self) -> Iterator[Batch]:
        self.thread.start()
        return self._batches()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():
            with suppress(queue.Empty):
                self.queue.get(timeout=0.05)
        self.thread.join()

    def _batches(self) -> Iterator[Batch]:
        while True:
            item = self.queue.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put(self, item: Batch | BaseException | _Done) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._produce()
        except BaseException as error:  # handed to the sending thread, which raises it
            self._put(error)
        else:
            self._put(_DONE)

    def _produce(self) -> None:
        ledger, tally, size, stop = self.ledger, self.tally, self.size, self.stop
        person, body = self.builder.personalization, self.builder.body
        number = ledger.next_batch if ledger is not None else 0
        hashes: list[int] = []
        people: list[str] = []
        mailboxes = Mailboxes()
        seen = mailboxes.seen
        stream = self.readers.recipients()
        left_out = self.audience.left_out  # mailbox key -> why; empty for most sends
        only = self.audience.only  # None but for an issue made for a group
        try:
            for email, name in stream:
                key = mailbox_key(email)
                if seen(key, email):  # never one mailbox twice (and never a 400)
                    tally.duplicates += 1
                    self.shown.advance(1)
                    continue
                if only is not None and key not in only:  # a set lookup
                    tally.outside += 1
                    self.shown.advance(1)
                    continue
                if left_out and (why := left_out.get(key)) is not None:
                    tally.left_out[why] = tally.left_out.get(why, 0) + 1  # a set lookup
                    self.shown.advance(1)
                    continue
                if ledger is not None:
                    reader = ledger.reader_hash(email)
                    if ledger.was_accepted(reader):
                        tally.already += 1
                        self.shown.advance(1)
                        continue
                    if ledger.is_in_doubt(reader):
                        tally.uncertain += 1
                        self.shown.advance(1)
                        continue
                    hashes.append(reader)
                people.append(person(email, name))
                if len(people) >= size:
                    if stop.is_set() or not self._put(Batch(number, hashes, body(people))):
                        return
                    number += 1
                    hashes, people = [], []
                    mailboxes.next_batch()
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the list file or cursor, when the stream stops early
        if people:
            self._put(Batch(number, hashes, body(people)))


class Mailboxes:
    """Which mailboxes a send has met, in memory that grows only with addresses that are not
    all lowercase. Readers stream in address order: in mailbox-key order two readers of one
    mailbox are neighbours; in the order of a version 1 list (the address itself) any spelling
    with a capital comes before the all-lowercase one. The batch being built is checked whole."""

    def __init__(self) -> None:
        self._previous = ""
        self._capitals: set[str] = set()
        self._batch: set[str] = set()

    def seen(self, key: str, email: str) -> bool:
        """Was a reader of this mailbox (``key``: ``email``'s mailbox key) met before?
        (Remembers this one.)"""
        if key == self._previous or key in self._capitals or key in self._batch:
            return True
        self._previous = key
        self._batch.add(key)
        if key != email:
            self._capitals.add(key)
        return False

    def next_batch(self) -> None:
        self._batch = set()
