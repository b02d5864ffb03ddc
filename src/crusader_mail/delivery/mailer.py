"""Transactional mail (confirm, welcome, goodbye, help): one message to one reader.

The inbox and the web endpoints take a :class:`Mailer`; the commands that need one build it
with :func:`make_mailer`, and tests use :class:`RecordingMailer`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Protocol

from crusader_mail.clock import Clock
from crusader_mail.delivery.body import transactional_body
from crusader_mail.delivery.client import (
    ClientFactory,
    PerThreadClients,
    Retrier,
    client_factory,
    jitter,
    post_mail,
)
from crusader_mail.models import OutgoingMessage
from crusader_mail.settings import Settings
from crusader_mail.util.masking import mask_email


class Mailer(Protocol):
    def send_one(self, message: OutgoingMessage) -> None:
        """Send one transactional message (confirm/welcome/goodbye) to one reader."""
        ...


class RecordingMailer:
    """A Mailer that keeps what it was asked to send (tests)."""

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
        clock: Clock,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._clients = PerThreadClients(factory)
        self._retrier = Retrier(settings.sendgrid, clock, sleep, jitter(rng))

    def send_one(self, message: OutgoingMessage) -> None:
        body = json.dumps(transactional_body(self.settings, message)).encode()
        what = f"the {message.category} message to {mask_email(message.to_email)}"
        timeout = self.settings.sendgrid.timeout
        self._retrier.call(what, lambda: post_mail(self._clients.get(), body, timeout))


def make_mailer(
    settings: Settings,
    clock: Clock,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> SendGridMailer:
    """The mailer of the commands that reply to readers; :class:`ConfigError` at once when
    ``sendgrid.api_key`` is not set."""
    return SendGridMailer(settings, client_factory(settings), clock, sleep=sleep, rng=rng)
