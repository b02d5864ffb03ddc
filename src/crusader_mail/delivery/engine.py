"""Delivering an issue to the list, exactly once, through a transport.

How :func:`deliver` works:

- Readers are streamed from the list (``Readers.iter``); a producer thread builds the bodies
  (:mod:`crusader_mail.delivery.body`) of the next batches of at most ``sendgrid.batch_size``
  readers, at most ``sendgrid.concurrency`` of them waiting, while the current one is sent.
- Requests go out ONE AT A TIME, and the issue's delivery ledger
  (:class:`~crusader_mail.storage.contract.LedgerStore`) records each batch ``pending`` before
  its request, ``accepted`` after SendGrid's 2xx and ``failed`` when SendGrid answered no, so a
  crash leaves at most one batch in doubt. Readers accepted before are skipped, and so are
  readers of a batch in doubt unless ``resend_uncertain``. A real send holds the ledgers' send
  lock from start to end.
- One mailbox gets one copy: a second reader of a mailbox the send meets (a list kept before
  readers were one per mailbox, see :func:`~crusader_mail.storage.rules.mailbox_key`) is
  counted in ``skipped["duplicate"]``, never dropped silently, so the counts add up.
- A dry run (a transport whose ``dry_run`` is true) builds the same bodies and skips the same
  readers, reading the ledger (when there is one and ``secret_key`` is set) without writing it.
- Sandbox mode (``sendgrid.sandbox_mode``) keeps a separate ledger, so a sandbox rehearsal
  never marks a real reader as delivered.
- A stopped send raises :class:`SendError` (:class:`SendRejected`, :class:`RetriesExhausted`)
  carrying the partial :class:`SendReport` as ``error.report``; a re-run resumes.

:func:`send_test` sends the issue to one address with a ``[TEST] `` subject: no ledger, no list.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

from crusader_mail.clock import Clock
from crusader_mail.delivery.body import BodyBuilder
from crusader_mail.delivery.links import link_signer
from crusader_mail.delivery.transport import BatchTransport
from crusader_mail.errors import InvalidAddress, RetriesExhausted, SendError, SendRejected
from crusader_mail.models import RenderedIssue, SendReport, Status, Subscriber
from crusader_mail.settings import SendGridSettings, Settings
from crusader_mail.storage.contract import Ledger, LedgerStore, LedgerWriter
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.masking import mask_addresses, mask_email

#: Called as ``hook(event, batch)`` with "pending" (ledger written), "accepted" (the transport
#: took it, ledger not yet written) and "recorded" (ledger written): the crash tests kill there.
SendHook = Callable[[str, int], None]

TEST_PREFIX = "[TEST] "
_SKIPPED = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED, Status.PENDING)


class Readers(Protocol):
    """What a send needs of the list (:class:`~crusader_mail.storage.contract.Roster`)."""

    def iter(self, status: Status | None = None) -> Iterator[Subscriber]: ...

    def counts(self) -> dict[Status, int]: ...


class SendProgress(Protocol):
    """Follows a send: ``start`` once with the number of active readers, ``advance`` as readers
    are done (sent, or skipped as accepted or in doubt before), ``stop`` at the end. Calls come
    one at a time, from the sending thread and the batch producer."""

    def start(self, total: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def stop(self) -> None: ...


@dataclass
class _Batch:
    number: int
    readers: list[int]  # ledger hashes
    body: dict[str, Any]


@dataclass
class _Tally:
    # written by the producer thread only
    already: int = 0  # accepted in an earlier run
    uncertain: int = 0  # in a batch in doubt from an earlier run
    duplicates: int = 0  # a second reader of a mailbox met before
    # written by the sending thread only
    delivered: int = 0
    requests: int = 0
    lost: int = 0  # in the batch being sent when the send stopped: in doubt now


def deliver(
    issue: RenderedIssue,
    readers: Readers,
    ledgers: LedgerStore,
    transport: BatchTransport,
    settings: Settings,
    clock: Clock,
    *,
    resend_uncertain: bool = False,
    progress: SendProgress | None = None,
    hook: SendHook | None = None,
) -> SendReport:
    """Send ``issue`` to every active reader not yet accepted for it (see the module docstring)."""
    signer, throwaway = link_signer(settings, allow_throwaway=transport.dry_run)
    counts = readers.counts()
    skipped = {status.value: counts.get(status, 0) for status in _SKIPPED}
    recipients = counts.get(Status.ACTIVE, 0)
    builder = BodyBuilder(issue, settings, signer, clock.now())
    tally = _Tally()

    def report(failed: int = 0) -> SendReport:
        return SendReport(
            issue=issue.issue_id,
            dry_run=transport.dry_run,
            recipients=recipients,
            delivered=tally.delivered,
            skipped={**skipped, "already_delivered": tally.already, "duplicate": tally.duplicates},
            requests=tally.requests,
            retries=transport.retries,
            failed=failed,
            uncertain=tally.uncertain + tally.lost,
        )

    with ExitStack() as stack:
        ledger, writer = stack.enter_context(
            _ledger(
                ledgers,
                issue.issue_id,
                clock,
                sandbox=settings.sendgrid.sandbox_mode,
                record=not transport.dry_run,
                readable=not throwaway,
                resend_uncertain=resend_uncertain,
            )
        )
        transport.start(issue, throwaway_key=throwaway)
        shown = stack.enter_context(_shown(progress, recipients))
        batches = stack.enter_context(
            _Producer(readers, builder, ledger, settings.sendgrid, tally, shown).start()
        )
        for batch in batches:
            tally.requests += 1
            writer.pending(batch.number, batch.readers)
            _notify(hook, "pending", batch.number)
            what = f"batch {batch.number + 1} ({len(batch.readers)} readers)"
            try:
                message_id = transport.send(batch.body, what)
            except (SendError, KeyboardInterrupt) as error:
                if isinstance(error, SendRejected) or (
                    isinstance(error, RetriesExhausted) and error.answered
                ):
                    # SendGrid answered and accepted nothing: the next run sends it again.
                    writer.failed(batch.number, str(error))
                else:
                    tally.lost += len(batch.readers)  # may or may not have gone out
                if isinstance(error, SendError):
                    done = tally.delivered + tally.already + tally.uncertain + tally.lost
                    done += tally.duplicates
                    error.report = report(failed=recipients - done)
                raise
            _notify(hook, "accepted", batch.number)
            writer.accepted(batch.number, message_id)
            _notify(hook, "recorded", batch.number)
            tally.delivered += len(batch.readers)
            shown.advance(len(batch.readers))
        transport.finish(report(), skipped)
    return report()


# --- the ledger -------------------------------------------------------------------------------


@contextmanager
def _ledger(
    ledgers: LedgerStore,
    issue_id: str,
    clock: Clock,
    *,
    sandbox: bool,
    record: bool,
    readable: bool,
    resend_uncertain: bool,
) -> Iterator[tuple[Ledger | None, LedgerWriter]]:
    """The issue's ledger and its writer. A real send (``record``) holds the send lock and
    appends; a dry run reads the ledger as it is (when there is one and ``readable``: a
    throwaway key cannot read it) and records nothing."""
    if not record:
        exists = readable and ledgers.exists(issue_id, sandbox=sandbox)
        yield (ledgers.load(issue_id, sandbox=sandbox) if exists else None), _NO_RECORDS
        return
    with ledgers.send_lock():
        ledger = ledgers.load(issue_id, sandbox=sandbox)
        with ledger.writer(clock) as writer:
            if resend_uncertain and ledger.in_doubt_batches:
                writer.release(ledger.in_doubt_batches)
                ledger.release_in_doubt()
            yield ledger, writer


class _NoRecords:
    """The ledger writer of a dry run: records nothing."""

    def pending(self, batch: int, readers: Iterable[int]) -> None:
        pass

    def accepted(self, batch: int, message_id: str | None) -> None:
        pass

    def failed(self, batch: int, error: str) -> None:
        pass

    def release(self, batches: Iterable[int]) -> None:
        pass


_NO_RECORDS = _NoRecords()


def _notify(hook: SendHook | None, event: str, batch: int) -> None:
    if hook is not None:
        hook(event, batch)


# --- progress ---------------------------------------------------------------------------------


class _Shown:
    """Passes progress on, one call at a time (two threads advance it)."""

    def __init__(self, progress: SendProgress | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()

    def advance(self, count: int) -> None:
        if self._progress is not None:
            with self._lock:
                self._progress.advance(count)


@contextmanager
def _shown(progress: SendProgress | None, total: int) -> Iterator[_Shown]:
    if progress is None:
        yield _Shown(None)
        return
    progress.start(total)
    try:
        yield _Shown(progress)
    finally:
        progress.stop()


# --- the batch producer -----------------------------------------------------------------------


class _Done:
    pass


_DONE = _Done()


class _Producer:
    """Streams readers into ready-to-send batches on a thread, a few batches ahead."""

    def __init__(
        self,
        readers: Readers,
        builder: BodyBuilder,
        ledger: Ledger | None,
        sg: SendGridSettings,
        tally: _Tally,
        shown: _Shown,
    ) -> None:
        self.readers = readers
        self.builder = builder
        self.ledger = ledger
        self.size = sg.batch_size
        self.tally = tally
        self.shown = shown
        self.queue: queue.Queue[_Batch | BaseException | _Done] = queue.Queue(sg.concurrency)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="crusader-mail-batches", daemon=True)

    def start(self) -> _Producer:
        self.thread.start()
        return self

    def __enter__(self) -> Iterator[_Batch]:
        return self._batches()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():
            with suppress(queue.Empty):
                self.queue.get(timeout=0.05)
        self.thread.join()

    def _batches(self) -> Iterator[_Batch]:
        while True:
            item = self.queue.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put(self, item: _Batch | BaseException | _Done) -> bool:
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
        ledger, tally = self.ledger, self.tally
        number = ledger.next_batch if ledger is not None else 0
        hashes: list[int] = []
        people: list[dict[str, Any]] = []
        mailboxes = _Mailboxes()
        stream = self.readers.iter(Status.ACTIVE)
        try:
            for subscriber in stream:
                if self.stop.is_set():
                    return
                email = subscriber.email
                if mailboxes.seen(email):  # never one mailbox twice (and never a 400)
                    tally.duplicates += 1
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
                else:
                    reader = 0
                hashes.append(reader)
                people.append(self.builder.personalization(email, subscriber.name))
                if len(people) >= self.size:
                    if not self._put(_Batch(number, hashes, self.builder.body(people))):
                        return
                    number += 1
                    hashes, people = [], []
                    mailboxes.next_batch()
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the list file, when the stream stops early
        if people:
            self._put(_Batch(number, hashes, self.builder.body(people)))


class _Mailboxes:
    """Which mailboxes a send has met, in memory that grows only with addresses that are not
    all lowercase. Readers stream in address order: in mailbox-key order two readers of one
    mailbox are neighbours; in the order of a version 1 list (the address itself) any spelling
    with a capital comes before the all-lowercase one. The batch being built is checked whole."""

    def __init__(self) -> None:
        self._previous = ""
        self._capitals: set[str] = set()
        self._batch: set[str] = set()

    def seen(self, email: str) -> bool:
        """Was a reader of this mailbox met before? (Remembers this one.)"""
        key = mailbox_key(email)
        if key == self._previous or key in self._capitals or key in self._batch:
            return True
        self._previous = key
        self._batch.add(key)
        if key != email:
            self._capitals.add(key)
        return False

    def next_batch(self) -> None:
        self._batch = set()


# --- test sends -------------------------------------------------------------------------------


def send_test(
    issue: RenderedIssue,
    to_email: str,
    transport: BatchTransport,
    settings: Settings,
    clock: Clock,
    *,
    name: str = "",
) -> SendReport:
    """Send the issue to one address, subject prefixed ``[TEST] ``; no ledger, no list change.
    Without ``secret_key`` its links are signed with a throwaway key."""
    from email_validator import EmailNotValidError, validate_email

    try:
        email = validate_email(to_email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise InvalidAddress(f"--to {mask_email(to_email)}: {mask_addresses(str(error))}") from None
    signer, throwaway = link_signer(settings, allow_throwaway=True)
    builder = BodyBuilder(issue, settings, signer, clock.now(), subject_prefix=TEST_PREFIX)
    body = builder.body([builder.personalization(email, name)])
    transport.start(issue, throwaway_key=throwaway)
    transport.send(body, f"the test send to {mask_email(email)}")
    report = SendReport(
        issue=issue.issue_id,
        dry_run=transport.dry_run,
        recipients=1,
        delivered=1,
        requests=1,
        retries=transport.retries,
    )
    transport.finish(report, {})
    return report
