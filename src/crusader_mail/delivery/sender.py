"""The sender: delivers a composed issue through SendGrid v3 ``/v3/mail/send``, exactly once.

Contract (``contracts.md``, sender): :func:`client_factory`, :class:`Mailer`,
:class:`SendGridMailer`, :class:`RecordingMailer`, :func:`personal_values`, :func:`list_headers`,
:func:`deliver`, :func:`send_test`; suppressions live in :mod:`crusader_mail.delivery.suppressions`, the
delivery ledger in :mod:`crusader_mail.storage.files.ledger`, the dry-run output in :mod:`crusader_mail.delivery.dry_run`.

How a send works:

- One request carries at most ``sendgrid.batch_size`` (≤ 1000) readers, one personalization each
  (``to`` holds that reader only, so nobody sees another address). The issue's ONE html and text
  are shared; per-reader values go in ``substitutions`` (:class:`~crusader_mail.models.Placeholder`
  keys), per-reader ``List-Unsubscribe`` headers literally in ``personalizations[].headers``
  (SendGrid substitutes nothing in headers). ``text/plain`` comes before ``text/html``.
- Readers are streamed from the list (:meth:`SubscriberList.iter`); a producer thread builds the
  next batches (at most ``sendgrid.concurrency`` of them waiting) while the current one is in
  flight. Requests themselves go out ONE AT A TIME: the ledger writes ``pending`` before and
  ``accepted`` after each request, so a crash leaves at most one batch in doubt. (Concurrent
  requests would leave up to ``concurrency`` batches in doubt.) ``concurrency`` clients, one per
  thread, are used where no ledger is involved: pulling the suppression lists.
- Faults: 429 (waiting for ``X-RateLimit-Reset`` when given), 5xx and connection errors/timeouts
  are retried with exponential backoff and full jitter, at most ``sendgrid.max_retries`` times,
  never waiting more than ``sendgrid.backoff_max``; then the send stops with :class:`SendError`.
  Other answers (400, 401, 403, 404, 413) stop it at once with :class:`SendRejected`, one line
  naming what SendGrid rejected and the setting to look at. Either error carries the partial
  :class:`SendReport` as ``error.report``; a re-run resumes.
- Sandbox mode (``sendgrid.sandbox_mode``) keeps a separate ledger (``<issue>.sandbox.jsonl``),
  so a sandbox rehearsal never marks a real reader as delivered.
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import sendgrid
from python_http_client.exceptions import HTTPError

from crusader_mail.clock import Clock
from crusader_mail.errors import InvalidAddress, SendError, SendRejected
from crusader_mail.models import OutgoingMessage, Placeholder, RenderedIssue, SendReport, Status
from crusader_mail.settings import SendGridSettings, Settings
from crusader_mail.storage.files.ledger import Ledger, ledger_path, send_lock
from crusader_mail.util.addresses import plus_address
from crusader_mail.util.masking import mask_addresses, mask_email
from crusader_mail.util.tokens import Purpose, Signer

ClientFactory = Callable[[], sendgrid.SendGridAPIClient]
#: Called as ``hook(event, batch)`` with "pending" (ledger written), "accepted" (SendGrid said
#: yes, ledger not yet written) and "recorded" (ledger written): the crash tests kill there.
SendHook = Callable[[str, int], None]

TEST_PREFIX = "[TEST] "
_SKIPPED = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED, Status.PENDING)


class Readers(Protocol):
    """What the sender needs of :class:`crusader_mail.subscribers.SubscriberList`."""

    def iter(self, status: Status | None = None) -> Iterator[Any]: ...

    def counts(self) -> dict[Status, int]: ...


# --- clients ----------------------------------------------------------------------------------


def client_factory(settings: Settings) -> ClientFactory:
    """A factory of SendGrid clients (one per thread: the client is not thread-safe).

    Raises :class:`ConfigError` at once when ``sendgrid.api_key`` is not set. Every request a
    client makes has ``sendgrid.timeout`` as its timeout.
    """
    api_key = settings.require_api_key()
    host = settings.sendgrid.api_url.rstrip("/")
    timeout = settings.sendgrid.timeout

    def make() -> sendgrid.SendGridAPIClient:
        client = sendgrid.SendGridAPIClient(api_key=api_key, host=host)
        client.client.timeout = timeout  # python_http_client passes it to every request
        return client

    return make


class PerThreadClients:
    """One client per thread, made by the factory on first use in that thread."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> sendgrid.SendGridAPIClient:
        client: sendgrid.SendGridAPIClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._factory()
            self._local.client = client
        return client


# --- faults and retries -----------------------------------------------------------------------


class RetriesExhausted(SendError):
    """SendGrid did not accept a request within the retry bound."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        #: True when the last attempt got an HTTP answer (so SendGrid did not take the request);
        #: False after a connection error or timeout (it may have).
        self.answered = answered


_HINTS = {
    401: "check sendgrid.api_key (SENDGRID_API_KEY): the key is wrong or revoked",
    403: "check the scope of sendgrid.api_key: it needs Mail Send (and Suppressions read)",
    404: "check sendgrid.api_url (and sendgrid.asm_group_id for unsubscribe groups)",
    413: "the request is over SendGrid's 30 MB: lower sendgrid.batch_size or shorten the issue",
}
_FIELD_SETTINGS = {
    "from": "newsletter.from_email (a verified sender)",
    "reply_to": "newsletter.reply_to",
    "subject": "compose.subject",
    "categories": "sendgrid.category",
    "asm": "sendgrid.asm_group_id",
    "mail_settings": "sendgrid.sandbox_mode",
    "personalizations": "sendgrid.batch_size and the subscriber list",
    "content": "the templates (templates_dir)",
}


def rejection(status: int, body: bytes | str | None, what: str) -> SendRejected:
    """One line: what SendGrid rejected (from its error body) and which setting to look at."""
    message, where = _error_detail(body)
    hint = _HINTS.get(status)
    if hint is None:
        area = (where or "").split(".")[0].split("[")[0]
        setting = _FIELD_SETTINGS.get(area)
        hint = f"look at {setting}" if setting else "look at the request field named above"
    field_part = f" (field {where})" if where else ""
    line = f"SendGrid rejected {what} (HTTP {status}): {message}{field_part}; {hint}"
    return SendRejected(" ".join(mask_addresses(line).split()))


def _error_detail(body: bytes | str | None) -> tuple[str, str | None]:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        data = json.loads(text)
        errors = data["errors"]
        first = errors[0]
        message = str(first.get("message") or "no message")
        where = first.get("field")
        extra = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return message + extra, str(where) if where not in (None, "", "null") else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return (text.strip()[:200] or "no error body"), None


@dataclass
class Retrier:
    """Calls SendGrid, retrying what is worth retrying (see the module docstring)."""

    settings: SendGridSettings
    clock: Clock
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=lambda: _jitter(None))
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, what: str, request: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return request()
            except HTTPError as error:
                status = int(error.status_code)
                if status != 429 and status < 500:
                    raise rejection(status, error.body, what) from None
                problem, answered = f"HTTP {status}", True
                reset = _header(error, "X-RateLimit-Reset") if status == 429 else None
            except (OSError, http.client.HTTPException) as error:
                problem, answered, reset = _describe_io(error), False, None
            if attempt >= self.settings.max_retries:
                raise RetriesExhausted(
                    f"SendGrid did not accept {what} after {attempt + 1} attempts "
                    f"(last: {problem}); run the same command again later to resume",
                    answered=answered,
                )
            self.sleep(self._delay(attempt, reset))
            attempt += 1
            with self._lock:
                self.retries += 1

    def _delay(self, attempt: int, reset: str | None) -> float:
        limit = self.settings.backoff_max
        if reset is not None:
            try:
                wait = float(reset) - self.clock.now().timestamp()
            except ValueError:
                wait = -1.0
            if wait >= 0:  # honour the rate limit window, plus up to a second of jitter
                return min(limit, wait + self.rng.random())
        ceiling = min(limit, self.settings.backoff_base * (2**attempt))
        return self.rng.uniform(0.0, ceiling)  # full jitter


def _jitter(rng: random.Random | None) -> random.Random:
    return rng if rng is not None else random.Random()  # noqa: S311 - backoff jitter, not secrets


def _header(error: HTTPError, name: str) -> str | None:
    headers = getattr(error, "headers", None)
    value = headers.get(name) if headers is not None else None
    return str(value) if value is not None else None


def _describe_io(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    detail = reason if reason is not None else error
    return f"{type(error).__name__}: {detail}".strip().rstrip(":")


def post_mail(client: sendgrid.SendGridAPIClient, body: Mapping[str, Any], timeout: float) -> Any:
    return client.client.mail.send.post(request_body=body, timeout=timeout)


# --- per-reader values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    mailto: str  # mailto:news+unsubscribe-<token>@example.com
    https: str | None  # https://…/unsubscribe?token=<token>, when newsletter.unsubscribe_url is set

    @property
    def visible(self) -> str:
        return self.https or self.mailto


def unsubscribe_links(settings: Settings, signer: Signer, email: str, now: datetime) -> Links:
    token = signer.make(Purpose.UNSUBSCRIBE, email, now)
    mailto = "mailto:" + plus_address(settings.command_address, f"unsubscribe-{token}")
    base = settings.newsletter.unsubscribe_url
    https = f"{base}{'&' if '?' in base else '?'}token={token}" if base else None
    return Links(mailto=mailto, https=https)


def _headers_for(settings: Settings, links: Links) -> dict[str, str]:
    if links.https:
        return {
            "List-Unsubscribe": f"<{links.mailto}>, <{links.https}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": settings.list_id,
        }
    return {"List-Unsubscribe": f"<{links.mailto}>", "List-Id": settings.list_id}


def list_headers(settings: Settings, signer: Signer, email: str, now: datetime) -> dict[str, str]:
    """``List-Unsubscribe`` (mailto, plus https one-click when configured), ``-Post``, ``List-Id``."""
    return _headers_for(settings, unsubscribe_links(settings, signer, email, now))


def clean_name(name: str) -> str:
    """A display name safe in headers and HTML: no control characters, no markup, bounded."""
    kept = "".join(ch for ch in name if ch.isprintable() and ch not in '<>"\\')
    return " ".join(kept.split())[:100]


def _values(email: str, name: str, links: Links) -> dict[Placeholder, str]:
    return {
        Placeholder.UNSUBSCRIBE_URL: links.visible,
        Placeholder.EMAIL: email,
        Placeholder.NAME: clean_name(name),
    }


def personal_values(
    settings: Settings, signer: Signer, subscriber: Any, now: datetime
) -> dict[Placeholder, str]:
    """The values of the placeholders for one reader (the visible unsubscribe link: the https
    URL when ``newsletter.unsubscribe_url`` is set, else the mailto)."""
    links = unsubscribe_links(settings, signer, subscriber.email, now)
    return _values(subscriber.email, subscriber.name, links)


# --- request bodies ---------------------------------------------------------------------------


class BodyBuilder:
    """Builds ``/v3/mail/send`` bodies for one issue: the shared part once, then per reader."""

    def __init__(
        self,
        issue: RenderedIssue,
        settings: Settings,
        signer: Signer,
        now: datetime,
        *,
        subject_prefix: str = "",
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.now = now
        sg = settings.sendgrid
        news = settings.newsletter
        sender: dict[str, str] = {"email": news.from_email}
        if news.from_name:
            sender["name"] = news.from_name
        content = [{"type": "text/plain", "value": issue.text}] if issue.text else []
        content.append({"type": "text/html", "value": issue.html})
        shared: dict[str, Any] = {
            "from": sender,
            "subject": subject_prefix + issue.subject,
            "content": content,
            "categories": [sg.category],
            "custom_args": {"issue": issue.issue_id},
        }
        if news.reply_to:
            shared["reply_to"] = {"email": news.reply_to}
        if sg.asm_group_id is not None:
            shared["asm"] = {"group_id": sg.asm_group_id}
        if sg.sandbox_mode:
            shared["mail_settings"] = {"sandbox_mode": {"enable": True}}
        self.shared = shared

    def personalization(self, email: str, name: str) -> dict[str, Any]:
        links = unsubscribe_links(self.settings, self.signer, email, self.now)
        recipient = {"email": email}
        shown = clean_name(name)
        if shown:
            recipient["name"] = shown
        return {
            "to": [recipient],
            "substitutions": {str(k): v for k, v in _values(email, name, links).items()},
            "headers": _headers_for(self.settings, links),
        }

    def body(self, personalizations: list[dict[str, Any]]) -> dict[str, Any]:
        return {"personalizations": personalizations, **self.shared}


# --- transactional mail -----------------------------------------------------------------------


class Mailer(Protocol):
    def send_one(self, message: OutgoingMessage) -> None:
        """Send one transactional message (confirm/welcome/goodbye) to one reader."""
        ...


class RecordingMailer:
    """A Mailer that keeps what it was asked to send (tests and dry runs)."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send_one(self, message: OutgoingMessage) -> None:
        self.sent.append(message)


class SendGridMailer:
    """Sends transactional mail through SendGrid (one client per thread, with retries)."""

    def __init__(
        self,
        settings: Settings,
        factory: ClientFactory,
        clock: Clock | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        from crusader_mail.clock import SystemClock

        self.settings = settings
        self._clients = PerThreadClients(factory)
        self._retrier = Retrier(settings.sendgrid, clock or SystemClock(), sleep, _jitter(rng))

    def send_one(self, message: OutgoingMessage) -> None:
        news = self.settings.newsletter
        sender = {"email": news.from_email, **({"name": news.from_name} if news.from_name else {})}
        recipient = {"email": message.to_email}
        if clean_name(message.to_name):
            recipient["name"] = clean_name(message.to_name)
        content = [{"type": "text/plain", "value": message.text}]
        if message.html:
            content.append({"type": "text/html", "value": message.html})
        body: dict[str, Any] = {
            "personalizations": [{"to": [recipient]}],
            "from": sender,
            "subject": message.subject,
            "content": content,
            "categories": [message.category],
        }
        if message.headers:
            body["headers"] = dict(message.headers)
        if news.reply_to:
            body["reply_to"] = {"email": news.reply_to}
        if self.settings.sendgrid.sandbox_mode:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        what = f"the {message.category} message to {mask_email(message.to_email)}"
        timeout = self.settings.sendgrid.timeout
        self._retrier.call(what, lambda: post_mail(self._clients.get(), body, timeout))


# --- delivering an issue ----------------------------------------------------------------------


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
    # written by the sending thread only
    delivered: int = 0
    requests: int = 0
    lost: int = 0  # in the batch in flight when the send stopped: in doubt now


class _Done:
    pass


_DONE = _Done()


def _signer(settings: Settings, dry_run: bool) -> tuple[Signer, bool]:
    """The token signer; a dry run without ``secret_key`` signs with a throwaway key."""
    unset = settings.secret_key is None or not settings.secret_key.get_secret_value()
    if unset and dry_run:
        return Signer(secrets.token_urlsafe(32)), True
    return Signer(settings.require_secret_key()), False


def deliver(
    issue: RenderedIssue,
    readers: Readers,
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    resend_uncertain: bool = False,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    hook: SendHook | None = None,
) -> SendReport:
    """Send ``issue`` to every active reader not yet accepted for it (see the module docstring).

    ``dry_run``: everything but the network and the ledger; writes ``settings.outbox_dir``.
    """
    from crusader_mail.delivery.dry_run import Outbox  # the dry-run writer

    signer, throwaway = _signer(settings, dry_run)
    counts = readers.counts()
    skipped = {status.value: counts.get(status, 0) for status in _SKIPPED}
    recipients = counts.get(Status.ACTIVE, 0)
    builder = BodyBuilder(issue, settings, signer, clock.now())
    path = ledger_path(settings.state_dir, issue.issue_id, sandbox=settings.sendgrid.sandbox_mode)
    tally = _Tally()
    retrier = Retrier(settings.sendgrid, clock, sleep, _jitter(rng))

    def report(failed: int = 0) -> SendReport:
        return SendReport(
            issue=issue.issue_id,
            dry_run=dry_run,
            recipients=recipients,
            delivered=tally.delivered,
            skipped={**skipped, "already_delivered": tally.already},
            requests=tally.requests,
            retries=retrier.retries,
            failed=failed,
            uncertain=tally.uncertain + tally.lost,
        )

    with ExitStack() as stack:
        if dry_run:
            ledger = None if throwaway else _read_only_ledger(path, issue.issue_id, settings)
            outbox = Outbox(settings.outbox_dir, issue, settings, clock, throwaway_key=throwaway)
            writer = None
        else:
            if factory is None:
                raise SendError("a real send needs a SendGrid client factory (sendgrid.api_key)")
            stack.enter_context(send_lock(settings.state_dir))
            ledger = Ledger.load(path, issue.issue_id, settings.require_secret_key())
            writer = stack.enter_context(ledger.writer(clock))
            outbox = None
            if resend_uncertain and ledger.in_doubt_batches:
                writer.release(ledger.in_doubt_batches)
                ledger.release_in_doubt()
        bar = stack.enter_context(_Bar(recipients, progress))
        batches = stack.enter_context(
            _Producer(readers, builder, ledger, settings.sendgrid, tally, bar).start()
        )
        client = None if factory is None or dry_run else factory()
        timeout = settings.sendgrid.timeout
        for batch in batches:
            tally.requests += 1
            if outbox is not None:
                outbox.add(batch.body)
                tally.delivered += len(batch.readers)
                bar.advance(len(batch.readers))
                continue
            if writer is None or client is None:  # pragma: no cover - set above when not dry
                raise SendError("internal: no ledger writer or client")
            writer.pending(batch.number, batch.readers)
            _notify(hook, "pending", batch.number)
            what = f"batch {batch.number + 1} ({len(batch.readers)} readers)"
            try:
                response = retrier.call(what, partial(post_mail, client, batch.body, timeout))
            except (SendError, KeyboardInterrupt) as error:
                if isinstance(error, SendRejected) or (
                    isinstance(error, RetriesExhausted) and error.answered
                ):
                    # SendGrid answered and accepted nothing: the next run sends it again.
                    writer.failed(batch.number, str(error))
                elif not isinstance(error, SendRejected):
                    tally.lost += len(batch.readers)  # may or may not have gone out
                if isinstance(error, SendError):
                    done = tally.delivered + tally.already + tally.uncertain + tally.lost
                    error.report = report(failed=recipients - done)
                raise
            _notify(hook, "accepted", batch.number)
            writer.accepted(batch.number, _message_id(response))
            _notify(hook, "recorded", batch.number)
            tally.delivered += len(batch.readers)
            bar.advance(len(batch.readers))
        if outbox is not None:
            outbox.finish(report(), skipped)
    return report()


def _read_only_ledger(path: Path, issue_id: str, settings: Settings) -> Ledger | None:
    if not path.exists():
        return None
    return Ledger.load(path, issue_id, settings.require_secret_key())


def _message_id(response: Any) -> str | None:
    headers = getattr(response, "headers", None)
    value = headers.get("X-Message-Id") if headers is not None else None
    return str(value) if value else None


def _notify(hook: SendHook | None, event: str, batch: int) -> None:
    if hook is not None:
        hook(event, batch)


class _Producer:
    """Streams readers into ready-to-send batches on a thread, a few batches ahead."""

    def __init__(
        self,
        readers: Readers,
        builder: BodyBuilder,
        ledger: Ledger | None,
        sg: SendGridSettings,
        tally: _Tally,
        bar: _Bar,
    ) -> None:
        self.readers = readers
        self.builder = builder
        self.ledger = ledger
        self.size = sg.batch_size
        self.tally = tally
        self.bar = bar
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
        in_batch: set[str] = set()
        stream = self.readers.iter(Status.ACTIVE)
        try:
            for subscriber in stream:
                if self.stop.is_set():
                    return
                email = subscriber.email
                if ledger is not None:
                    reader = ledger.reader_hash(email)
                    if ledger.was_accepted(reader):
                        tally.already += 1
                        self.bar.advance(1)
                        continue
                    if ledger.is_in_doubt(reader):
                        tally.uncertain += 1
                        self.bar.advance(1)
                        continue
                else:
                    reader = 0
                key = email.lower()
                if key in in_batch:  # never the same address twice in one request (a 400)
                    continue
                in_batch.add(key)
                hashes.append(reader)
                people.append(self.builder.personalization(email, subscriber.name))
                if len(people) >= self.size:
                    if not self._put(_Batch(number, hashes, self.builder.body(people))):
                        return
                    number += 1
                    hashes, people, in_batch = [], [], set()
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the list file, when the stream stops early
        if people:
            self._put(_Batch(number, hashes, self.builder.body(people)))


# --- progress ---------------------------------------------------------------------------------


class _Bar:
    """A rich progress bar on stderr (or nothing)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._progress: Any = None
        self._task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task("sending", total=total)
        self._lock = threading.Lock()

    def advance(self, count: int) -> None:
        if self._progress is not None:
            with self._lock:
                self._progress.advance(self._task, count)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# --- test sends -------------------------------------------------------------------------------


def send_test(
    issue: RenderedIssue,
    to_email: str,
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    *,
    dry_run: bool = False,
    name: str = "",
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> SendReport:
    """Send the issue to one address, subject prefixed ``[TEST] ``; no ledger, no list change."""
    from email_validator import EmailNotValidError, validate_email

    from crusader_mail.delivery.dry_run import Outbox

    try:
        email = validate_email(to_email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise InvalidAddress(f"--to {mask_email(to_email)}: {mask_addresses(str(error))}") from None
    signer, throwaway = _signer(settings, dry_run=True)
    builder = BodyBuilder(issue, settings, signer, clock.now(), subject_prefix=TEST_PREFIX)
    body = builder.body([builder.personalization(email, name)])
    retrier = Retrier(settings.sendgrid, clock, sleep, _jitter(rng))
    if not dry_run:
        if factory is None:
            raise SendError("a test send needs a SendGrid client factory (sendgrid.api_key)")
        client = factory()
        timeout = settings.sendgrid.timeout
        what = f"the test send to {mask_email(email)}"
        retrier.call(what, lambda: post_mail(client, body, timeout))
    report = SendReport(
        issue=issue.issue_id,
        dry_run=dry_run,
        recipients=1,
        delivered=1,
        requests=1,
        retries=retrier.retries,
    )
    if dry_run:
        outbox = Outbox(settings.outbox_dir, issue, settings, clock, throwaway_key=throwaway)
        outbox.add(body)
        outbox.finish(report, {})
    return report
