"""Talking to SendGrid: clients, kept-alive connections, retries, and one-line rejections.

- :func:`client_factory` makes ``sendgrid.SendGridAPIClient`` objects for the configured key,
  URL and timeout; :class:`PerThreadClients` keeps one per thread (a client is not thread-safe).
- :func:`post_mail` posts a JSON body to ``/v3/mail/send`` through the library's client (its
  URL, headers, error classes and ``Response``); the connection is the opener's: urllib's (one
  connection per request, as the library does) or a :class:`KeptAlive` one, which
  :class:`Sessions` gives each sending thread.
- :class:`Retrier` calls SendGrid, retrying 429 (waiting for ``X-RateLimit-Reset`` when given),
  5xx and connection errors/timeouts with exponential backoff and full jitter, at most
  ``sendgrid.max_retries`` times, never waiting more than ``sendgrid.backoff_max``; then it
  raises :class:`~crusader_mail.errors.RetriesExhausted` (after 429s: the rate limit, and to
  run again later). Any other answer (400, 401, 403, 404, 413) raises
  :class:`~crusader_mail.errors.SendRejected` at once: one line with SendGrid's message and the
  fix its documented meaning calls for (:func:`rejection`): verify the sender or its domain,
  the key's permissions, a wrong key, used-up credits, sandbox mode, the unsubscribe group,
  the size, the API URL; else the setting behind the field it names.
"""

from __future__ import annotations

import http.client
import io
import json
import random
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

import sendgrid
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError

from crusader_mail.clock import Clock
from crusader_mail.errors import RetriesExhausted, SendRejected
from crusader_mail.settings import SendGridSettings, Settings
from crusader_mail.util.masking import mask_addresses

ClientFactory = Callable[[], sendgrid.SendGridAPIClient]


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


class Opener(Protocol):
    """What ``python_http_client``'s ``Client._make_request`` opens a request with (urllib's
    ``OpenerDirector`` shape): an answer that is not 2xx raises ``urllib.error.HTTPError``."""

    def open(self, request: urllib.request.Request, timeout: float | None = None) -> Any: ...


def post_mail(
    client: sendgrid.SendGridAPIClient, data: bytes, timeout: float, opener: Opener | None = None
) -> Any:
    """``POST /v3/mail/send`` with the JSON ``data``; the library's ``Response`` (errors raise
    its ``HTTPError`` subclasses). The library's client makes the URL and headers (the key) and
    classifies the answer (``Client._make_request``, its seam for the opener); ``opener``
    carries the request: urllib's own when not given, as the library's ``post`` does."""
    endpoint = client.client.mail.send
    headers = {**endpoint.request_headers, "Content-Type": "application/json"}
    request = urllib.request.Request(  # noqa: S310 - the configured https API URL
        endpoint._build_url(None), data=data, headers=headers, method="POST"
    )
    opened = endpoint._make_request(opener or urllib.request.build_opener(), request, timeout)
    return Response(opened)


class KeptAlive:
    """An :class:`Opener` keeping one HTTP/1.1 connection to the API open between requests.

    A new connection is made for the first request, after an error, after an answer that
    closes it, and when the server closed it while it was idle (it became readable: seen
    before the request goes out, as urllib3 does). Behind a proxy (``HTTPS_PROXY``, and no
    ``NO_PROXY`` for the host) each request goes through urllib's own opener instead, one
    connection each. ``opened`` counts the connections made. One thread uses it at a time."""

    def __init__(self) -> None:
        self._connection: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, int | None] | None = None
        self.opened = 0

    def open(self, request: urllib.request.Request, timeout: float | None = None) -> Any:
        url = urlsplit(request.full_url)
        if _proxied(url):
            return urllib.request.build_opener().open(request, timeout=timeout)
        connection = self._connect(url, timeout)
        selector = url.path + (f"?{url.query}" if url.query else "")
        try:
            connection.request(
                request.get_method(),
                selector,
                body=request.data,
                headers=dict(request.header_items()),
            )
            answer = connection.getresponse()
            body = answer.read()
        except BaseException:
            self.close()
            raise
        if answer.will_close:
            self.close()
        if not 200 <= answer.status < 300:
            raise urllib.error.HTTPError(
                request.full_url, answer.status, answer.reason, answer.msg, io.BytesIO(body)
            )
        return _Accepted(answer.status, body, answer.msg)

    def _connect(self, url: SplitResult, timeout: float | None) -> http.client.HTTPConnection:
        origin = (url.scheme, url.hostname or "", url.port)
        connection = self._connection
        if connection is not None and (origin != self._origin or _dropped(connection.sock)):
            self.close()
            connection = None
        if connection is None:
            made = (
                http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            )
            connection = made(origin[1], origin[2], timeout=timeout)
            self._connection, self._origin = connection, origin
            self.opened += 1
        else:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass(frozen=True)
class _Accepted:
    """A 2xx answer, read whole (the connection goes on), in the shape the library reads."""

    status: int
    body: bytes
    headers: Message

    def getcode(self) -> int:
        return self.status

    def read(self) -> bytes:
        return self.body

    def info(self) -> Message:
        return self.headers


def _proxied(url: SplitResult) -> bool:
    """Would urllib send this request through a proxy?"""
    proxies = urllib.request.getproxies()
    return url.scheme in proxies and not urllib.request.proxy_bypass(url.hostname or "")


def _dropped(sock: socket.socket | None) -> bool:
    """Did the server close this idle connection (it is readable while nothing was asked)?"""
    if sock is None:
        return False
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(0))


class Sessions:
    """What each sending thread posts with: its own client (made by the factory on first use
    in that thread) and its own :class:`KeptAlive` connection. ``close`` closes them all."""

    def __init__(self, factory: ClientFactory) -> None:
        self._clients = PerThreadClients(factory)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._openers: list[KeptAlive] = []

    def post_mail(self, data: bytes, timeout: float) -> Any:
        opener: KeptAlive | None = getattr(self._local, "opener", None)
        if opener is None:
            opener = self._local.opener = KeptAlive()
            with self._lock:
                self._openers.append(opener)
        return post_mail(self._clients.get(), data, timeout, opener)

    @property
    def connections(self) -> int:
        """Connections made so far, by every thread."""
        with self._lock:
            return sum(opener.opened for opener in self._openers)

    def close(self) -> None:
        """Close every thread's connection (the threads are done sending)."""
        with self._lock:
            for opener in self._openers:
                opener.close()


def message_id(response: Any) -> str | None:
    """SendGrid's ``X-Message-Id`` for an accepted request, when it sent one."""
    headers = getattr(response, "headers", None)
    value = headers.get("X-Message-Id") if headers is not None else None
    return str(value) if value else None


# --- rejections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """One of SendGrid's documented refusals and its fix: it applies to an answer with one of
    ``statuses`` (any, when empty) whose messages hold one of ``words`` or whose field starts
    with one of ``fields`` (either, when both are given; neither: the status alone)."""

    statuses: tuple[int, ...]
    words: tuple[str, ...]
    fields: tuple[str, ...]
    fix: str
    suppressions_fix: str | None = None  # instead of ``fix`` when a suppression list was asked

    def applies(self, status: int, text: str, field: str) -> bool:
        if self.statuses and status not in self.statuses:
            return False
        if not self.words and not self.fields:
            return True
        return any(word in text for word in self.words) or any(
            field.startswith(prefix) for prefix in self.fields
        )


_KEYS_PAGE = "Settings > API Keys in SendGrid"
# SendGrid's errors (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors and its
# "4XX API Errors and Troubleshooting" article) and what to change; the first that applies wins.
_ANSWERS = (
    _Answer(
        (),
        ("verified sender identity", "not authorized to send from", "sender identity"),
        (),
        "newsletter.from_email is not a verified sender of this SendGrid account (the API key "
        "is not the problem): verify that address (Settings > Sender Authentication > Single "
        "Sender Verification) or authenticate its domain (Domain Authentication)",
    ),
    _Answer(
        (),
        ("maximum credits exceeded", "credits"),
        (),
        "the SendGrid plan's sending credits are used up: wait until they reset (daily on the "
        "free plan, monthly on others) or upgrade the plan, then run the same command to resume",
    ),
    _Answer(
        (401,),
        ("not authorized", "permission", "scope"),
        (),
        "check the scope of sendgrid.api_key: it needs the Mail Send permission "
        f"({_KEYS_PAGE} > Edit), and Suppressions read for the suppression sync",
        "check the scope of sendgrid.api_key: reading SendGrid's suppression lists needs "
        f"Suppressions read ({_KEYS_PAGE} > Edit), besides Mail Send",
    ),
    _Answer(
        (401,),
        (),
        (),
        "check sendgrid.api_key (SENDGRID_API_KEY): SendGrid does not know this key (mistyped, "
        f"deleted or revoked); create one under {_KEYS_PAGE} and set SENDGRID_API_KEY",
    ),
    _Answer(
        (400, 403),
        ("sandbox",),
        ("mail_settings.sandbox_mode",),
        "look at sendgrid.sandbox_mode (true or false; with true SendGrid checks each request "
        "and delivers nothing)",
    ),
    _Answer(
        (400, 403, 404),
        ("asm", "unsubscribe group", "suppression group", "group_id", "group id"),
        ("asm",),
        "sendgrid.asm_group_id must be the id of one of this account's unsubscribe groups "
        "(Suppressions > Unsubscribe Groups), or be left out",
    ),
    _Answer(
        (403,),
        (),
        (),
        "check the scope of sendgrid.api_key: it needs the Mail Send permission "
        f"({_KEYS_PAGE} > Edit), and Suppressions read for the suppression sync",
        "check the scope of sendgrid.api_key: reading SendGrid's suppression lists needs "
        f"Suppressions read ({_KEYS_PAGE} > Edit), besides Mail Send",
    ),
    _Answer(
        (413,),
        (),
        (),
        "the request is over SendGrid's 30 MB: lower sendgrid.batch_size, or make the issue "
        "smaller (compose.full_content = false, compose.max_html_bytes)",
    ),
    _Answer(
        (404,),
        (),
        (),
        "check sendgrid.api_url (https://api.sendgrid.com, or https://api.eu.sendgrid.com for "
        "an EU subuser)",
    ),
)
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
RATE_LIMITED = (
    "SendGrid's rate limit (HTTP 429) held through every retry: the plan's requests per second "
    "or messages per day ran out; run the same command later to resume (nobody gets it twice)"
)


def rejection(status: int, body: bytes | str | None, what: str) -> SendRejected:
    """One line: what SendGrid rejected (from its error body) and what to change: the fix of
    its documented message (:data:`_ANSWERS`), else the setting behind the field it names."""
    message, where, everything = _error_detail(body)
    text = everything.lower()
    answer = next((a for a in _ANSWERS if a.applies(status, text, where or "")), None)
    if answer is not None:
        suppressions = "suppression list" in what
        hint = answer.suppressions_fix if suppressions and answer.suppressions_fix else answer.fix
    else:
        area = (where or "").split(".")[0].split("[")[0]
        setting = _FIELD_SETTINGS.get(area)
        hint = f"look at {setting}" if setting else "look at the request field named above"
    field_part = f" (field {where})" if where else ""
    line = f"SendGrid rejected {what} (HTTP {status}): {message}{field_part}; {hint}"
    return SendRejected(" ".join(mask_addresses(line).split()))


def _error_detail(body: bytes | str | None) -> tuple[str, str | None, str]:
    """(the first error's message, its field, every message joined) of SendGrid's error body
    ``{"errors": [{"message", "field", "help"}]}``; the body's start when it is not that."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        data = json.loads(text)
        errors = data["errors"]
        first = errors[0]
        message = str(first.get("message") or "no message")
        where = first.get("field")
        extra = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        every = " ".join(str(error.get("message") or "") for error in errors)
        field = str(where) if where not in (None, "", "null") else None
        return message + extra, field, every
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        shown = text.strip()[:200] or "no error body"
        return shown, None, shown


# --- retries ----------------------------------------------------------------------------------


def jitter(rng: random.Random | None) -> random.Random:
    """``rng``, or a fresh generator for backoff jitter."""
    return rng if rng is not None else random.Random()  # noqa: S311 - backoff jitter, not secrets


@dataclass
class Retrier:
    """Calls SendGrid, retrying what is worth retrying (see the module docstring)."""

    settings: SendGridSettings
    clock: Clock
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=lambda: jitter(None))
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
                advice = (
                    RATE_LIMITED
                    if problem == "HTTP 429"
                    else "run the same command again later to resume"
                )
                raise RetriesExhausted(
                    f"SendGrid did not accept {what} after {attempt + 1} attempts "
                    f"(last: {problem}); {advice}",
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


def _header(error: HTTPError, name: str) -> str | None:
    headers = getattr(error, "headers", None)
    value = headers.get(name) if headers is not None else None
    return str(value) if value is not None else None


def _describe_io(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    detail = reason if reason is not None else error
    return f"{type(error).__name__}: {detail}".strip().rstrip(":")
