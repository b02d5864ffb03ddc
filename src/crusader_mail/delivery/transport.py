"""Where the request bodies of a send go: to SendGrid, or into the dry-run outbox.

:func:`~crusader_mail.delivery.engine.deliver` and
:func:`~crusader_mail.delivery.engine.send_test` build every body the same way whichever
transport they are given; the caller picks it. A transport is used for one send at a time:
``start`` once, ``send`` per request, ``finish`` when every request went through.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

from crusader_mail.clock import Clock
from crusader_mail.delivery.client import ClientFactory, Retrier, jitter, message_id, post_mail
from crusader_mail.delivery.dry_run import Outbox
from crusader_mail.models import RenderedIssue, SendReport
from crusader_mail.settings import Settings


class BatchTransport(Protocol):
    @property
    def dry_run(self) -> bool:
        """True when nothing leaves the machine: the send reads the delivery ledger but never
        writes it, and without ``secret_key`` the links are signed with a throwaway key."""
        ...

    @property
    def retries(self) -> int:
        """Requests retried since :meth:`start`."""
        ...

    def start(self, issue: RenderedIssue, *, throwaway_key: bool) -> None:
        """Get ready to send ``issue`` (``throwaway_key``: its links cannot be used)."""
        ...

    def send(self, body: Mapping[str, Any], what: str) -> str | None:
        """Hand over one request body (``what`` names it in errors); SendGrid's message id when
        there is one. Raises :class:`SendError` when it did not go through."""
        ...

    def finish(self, report: SendReport, skipped: Mapping[str, int]) -> None:
        """The send is over and every request went through."""
        ...


class SendGridTransport:
    """``POST /v3/mail/send`` with retries (:class:`~crusader_mail.delivery.client.Retrier`)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        factory: ClientFactory,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._rng = jitter(rng)
        self._retrier = Retrier(settings.sendgrid, clock, sleep, self._rng)
        self._post = partial(post_mail, factory(), timeout=settings.sendgrid.timeout)

    @property
    def dry_run(self) -> bool:
        return False

    @property
    def retries(self) -> int:
        return self._retrier.retries

    def start(self, issue: RenderedIssue, *, throwaway_key: bool) -> None:
        self._retrier = Retrier(self._settings.sendgrid, self._clock, self._sleep, self._rng)

    def send(self, body: Mapping[str, Any], what: str) -> str | None:
        return message_id(self._retrier.call(what, partial(self._post, body)))

    def finish(self, report: SendReport, skipped: Mapping[str, int]) -> None:
        pass


class DryRunTransport:
    """Writes the bodies to ``settings.outbox_dir`` (:class:`~crusader_mail.delivery.dry_run.Outbox`)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._outbox: Outbox | None = None

    @property
    def dry_run(self) -> bool:
        return True

    @property
    def retries(self) -> int:
        return 0

    def start(self, issue: RenderedIssue, *, throwaway_key: bool) -> None:
        folder = self._settings.outbox_dir
        self._outbox = Outbox(
            folder, issue, self._settings, self._clock, throwaway_key=throwaway_key
        )

    def send(self, body: Mapping[str, Any], what: str) -> str | None:
        self._started().add(body)
        return None

    def finish(self, report: SendReport, skipped: Mapping[str, int]) -> None:
        self._started().finish(report, skipped)

    def _started(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("DryRunTransport.send before start")
        return self._outbox
