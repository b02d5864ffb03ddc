"""Delivering an issue to the list, exactly once, through a transport.

How :func:`deliver` works:

- The list is counted first (``Readers.counts``: the files store checks every row there, so a
  damaged list stops the send before any request), then its active readers are streamed as
  (address, name) pairs (``Readers.recipients``, no reader objects). A producer thread
  (:mod:`.batches`) builds the bodies (:mod:`crusader_mail.delivery.body`) of the next batches
  of at most ``sendgrid.batch_size`` readers, a few batches ahead of the requests.
- Up to ``transport.in_flight`` requests (``sendgrid.concurrency`` for SendGrid) are in flight
  at once, each on its own thread and kept-alive connection. The issue's delivery ledger
  (:class:`~crusader_mail.storage.contract.LedgerStore`) records each batch ``pending`` before
  its request, ``accepted`` after SendGrid's 2xx and ``failed`` when SendGrid answered no; only
  this thread writes it. A batch is handed to a request only once its ``pending`` is durable,
  and a new one only while fewer than ``in_flight`` are unanswered, so a crash leaves at most
  ``in_flight`` batches in doubt. Readers accepted before are skipped, and so are readers of a
  batch in doubt unless ``resend_uncertain``. A real send holds the ledgers' send lock from
  start to end.
- One mailbox gets one copy: a second reader of a mailbox the send meets (a list kept before
  readers were one per mailbox, see :func:`~crusader_mail.storage.rules.mailbox_key`) is
  counted in ``skipped["duplicate"]``, never dropped silently, so the counts add up.
- A dry run (a transport whose ``dry_run`` is true) builds the same bodies and skips the same
  readers, reading the ledger (when there is one and ``secret_key`` is set) without writing it.
- Sandbox mode (``sendgrid.sandbox_mode``) keeps a separate ledger, so a sandbox rehearsal
  never marks a real reader as delivered.
- A stopped send raises :class:`SendError` (:class:`SendRejected`, :class:`RetriesExhausted`)
  carrying the partial :class:`SendReport` as ``error.report``; a re-run resumes. When one
  request fails no new one starts; those in flight are waited for and recorded first.

:func:`send_test` sends the issue to one address with a ``[TEST] `` subject: no ledger, no list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager

from crusader_mail.clock import Clock
from crusader_mail.delivery.audience import EVERYONE, Audience
from crusader_mail.delivery.batches import (
    Batch,
    Producer,
    Readers,
    SendProgress,
    Shown,
    Tally,
    shown_progress,
)
from crusader_mail.delivery.body import BodyBuilder
from crusader_mail.delivery.links import link_signer
from crusader_mail.delivery.transport import BatchTransport
from crusader_mail.errors import InvalidAddress, RetriesExhausted, SendError, SendRejected
from crusader_mail.models import RenderedIssue, SendReport, Status
from crusader_mail.settings import Settings
from crusader_mail.storage.contract import Ledger, LedgerStore, LedgerWriter
from crusader_mail.util.masking import mask_addresses, mask_email

#: Called as ``hook(event, batch)`` with "pending" (ledger written), "accepted" (the transport
#: took it, ledger not yet written) and "recorded" (ledger written): the crash tests kill there.
SendHook = Callable[[str, int], None]

TEST_PREFIX = "[TEST] "
_SKIPPED = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED, Status.PENDING)


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
    audience: Audience = EVERYONE,
) -> SendReport:
    """Send ``issue`` to every active reader not yet accepted for it (see the module docstring)
    and in its ``audience`` (:mod:`crusader_mail.delivery.audience`: those it leaves out are
    counted in ``skipped`` by reason, and not in ``recipients``; an issue for a group counts
    only its readers, so its ``skipped`` has no list-wide statuses)."""
    signer, throwaway = link_signer(settings, allow_throwaway=transport.dry_run)
    counts = readers.counts()
    grouped = audience.only is not None
    skipped = {} if grouped else {status.value: counts.get(status, 0) for status in _SKIPPED}
    recipients = counts.get(Status.ACTIVE, 0)
    builder = BodyBuilder(issue, settings, signer, clock.now())
    tally = Tally()

    def report(failed: int = 0) -> SendReport:
        left_out = tally.left_out
        return SendReport(
            issue=issue.issue_id,
            dry_run=transport.dry_run,
            recipients=recipients - sum(left_out.values()) - tally.outside,
            delivered=tally.delivered,
            skipped={
                **skipped,
                "already_delivered": tally.already,
                "duplicate": tally.duplicates,
                **left_out,
            },
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
        stack.callback(transport.close)
        shown = stack.enter_context(shown_progress(progress, recipients))
        batches = stack.enter_context(
            Producer(
                readers,
                builder,
                ledger,
                settings.sendgrid,
                transport.in_flight,
                tally,
                shown,
                audience,
            )
        )
        flights = _Flights(transport, writer, tally, shown, hook)
        try:
            flights.fly(batches)
        except SendError as error:
            done = tally.delivered + tally.already + tally.uncertain + tally.lost
            done += tally.duplicates + sum(tally.left_out.values()) + tally.outside
            error.report = report(failed=recipients - done)
            raise
        transport.finish(report(), skipped)
    return report()


# --- requests in flight -----------------------------------------------------------------------


class _Flights:
    """Hands batches to ``transport.in_flight`` sending threads and records each in the ledger:
    ``pending`` before its request goes, its outcome when it comes back (this thread only)."""

    def __init__(
        self,
        transport: BatchTransport,
        writer: LedgerWriter,
        tally: Tally,
        shown: Shown,
        hook: SendHook | None,
    ) -> None:
        self.transport = transport
        self.writer = writer
        self.tally = tally
        self.shown = shown
        self.hook = hook
        self.flying: dict[Future[str | None], Batch] = {}
        self.error: SendError | None = None

    def fly(self, batches: Iterator[Batch]) -> None:
        """Send every batch, at most ``in_flight`` at once; raise the first failure once no
        request is in flight any more (a ``KeyboardInterrupt`` at once: those in flight stay
        in doubt)."""
        room = self.transport.in_flight
        pool = ThreadPoolExecutor(room, thread_name_prefix="crusader-mail-send")
        try:
            for batch in batches:
                while len(self.flying) >= room:
                    self._land(wait(self.flying, return_when=FIRST_COMPLETED).done)
                if self.error is not None:
                    break
                self.tally.requests += 1
                self.writer.pending(batch.number, batch.readers)
                _notify(self.hook, "pending", batch.number)
                what = f"batch {batch.number + 1} ({batch.size} readers)"
                self.flying[pool.submit(self.transport.send, batch.body, what)] = batch
            while self.flying:
                self._land(wait(self.flying, return_when=FIRST_COMPLETED).done)
        except BaseException:
            self.tally.lost += sum(batch.size for batch in self.flying.values())
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        if self.error is not None:
            raise self.error

    def _land(self, done: Iterable[Future[str | None]]) -> None:
        for future in sorted(done, key=lambda landed: self.flying[landed].number):
            batch = self.flying.pop(future)
            try:
                message_id = future.result()
            except SendError as error:
                if isinstance(error, SendRejected) or (
                    isinstance(error, RetriesExhausted) and error.answered
                ):
                    # SendGrid answered and accepted nothing: the next run sends it again.
                    self.writer.failed(batch.number, str(error))
                else:
                    self.tally.lost += batch.size  # may or may not have gone out
                self.error = self.error or error
                continue
            except BaseException:
                self.tally.lost += batch.size
                raise
            _notify(self.hook, "accepted", batch.number)
            self.writer.accepted(batch.number, message_id)
            _notify(self.hook, "recorded", batch.number)
            self.tally.delivered += batch.size
            self.shown.advance(batch.size)


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
    try:
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
    finally:
        transport.close()
    return report
