"""Talking to SendGrid: clients, retries, and one-line rejections.

- :func:`client_factory` makes ``sendgrid.SendGridAPIClient`` objects for the configured key,
  URL and timeout; :class:`PerThreadClients` keeps one per thread (a client is not thread-safe).
- :class:`Retrier` calls SendGrid, retrying 429 (waiting for ``X-RateLimit-Reset`` when given),
  5xx and connection errors/timeouts with exponential backoff and full jitter, at most
  ``sendgrid.max_retries`` times, never waiting more than ``sendgrid.backoff_max``; then it
  raises :class:`~crusader_mail.errors.RetriesExhausted`. Any other answer (400, 401, 403, 404,
  413) raises :class:`~crusader_mail.errors.SendRejected` at once: one line naming what SendGrid
  rejected and the setting to look at (:func:`rejection`).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sendgrid
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


def post_mail(client: sendgrid.SendGridAPIClient, body: Mapping[str, Any], timeout: float) -> Any:
    """``POST /v3/mail/send`` with ``body``; the response (errors raise ``HTTPError``)."""
    return client.client.mail.send.post(request_body=body, timeout=timeout)


def message_id(response: Any) -> str | None:
    """SendGrid's ``X-Message-Id`` for an accepted request, when it sent one."""
    headers = getattr(response, "headers", None)
    value = headers.get("X-Message-Id") if headers is not None else None
    return str(value) if value else None


# --- rejections -------------------------------------------------------------------------------

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


def _header(error: HTTPError, name: str) -> str | None:
    headers = getattr(error, "headers", None)
    value = headers.get(name) if headers is not None else None
    return str(value) if value is not None else None


def _describe_io(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    detail = reason if reason is not None else error
    return f"{type(error).__name__}: {detail}".strip().rstrip(":")
