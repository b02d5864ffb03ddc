"""Where the request bodies of a send go: to SendGrid, or into the dry-run outbox.

:func:`~crusader_mail.delivery.engine.deliver` and
:func:`~crusader_mail.delivery.engine.send_test` build every body the same way whichever
transport they are given; the caller picks it. A transport is used for one send at a time:
``start`` once, ``send`` per request (from up to ``in_flight`` threads at once), ``finish`` when
every request went through, ``close`` at the end whatever happened.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

from crusader_mail.clock import Clock
from crusader_mail.delivery.body import RequestBody
from crusader_mail.delivery.client import ClientFactory, Retrier, Sessions, jitter, message_id
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

    @property
    def in_flight(self) -> int:
        """How many :meth:`send` calls may run at once, each on its own thread."""
        ...

    def start(self, issue: RenderedIssue, *, throwaway_key: bool) -> None:
        """Get ready to send ``issue`` (``throwaway_key``: its links cannot be used)."""
        ...

    def send(self, body: RequestBody, what: str) -> str | None:
        """Hand over one request body (``what`` names it in errors); SendGrid's message id when
        there is one. Raises :class:`SendError` when it did not go through."""
        ...

    def finish(self, report: SendReport, skipped: Mapping[str, int]) -> None:
        """The send is over and every request went through."""
        ...

    def close(self) -> None:
        """The send is over, however it ended: let go of connections."""
        ...


class SendGridTransport:
    """``POST /v3/mail/send`` with retries (:class:`~crusader_mail.delivery.client.Retrier`),
    ``sendgrid.concurrency`` at once, each sending thread on its own kept-alive connection
    (:class:`~crusader_mail.delivery.client.Sessions`)."""

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
        self._factory = factory
        self._sessions = Sessions(factory)
        self.connections = 0  # connections the last send made

    @property
    def dry_run(self) -> bool:
        return False

    @property
    def retries(self) -> int:
        return self._retrier.retries

    @property
    def in_flight(self) -> int:
        return self._settings.sendgrid.concurrency

    def start(self, issue: RenderedIssue, *, throwaway_key: bool) -> None:
        self._retrier = Retrier(self._settings.sendgrid, self._clock, self._sleep, self._rng)
        self._sessions = Sessions(self._factory)

    def send(self, body: RequestBody, what: str) -> str | None:
        post = partial(self._sessions.post_mail, body.data, self._settings.sendgrid.timeout)
        return message_id(self._retrier.call(what, post))

    def finish(self, report: SendReport, skipped: Mapping[str, int]) -> None:
        pass

    def close(self) -> None:
        self._sessions.close()
        self.connections = self._sessions.connections


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

    @property
    def in_flight(self) -> int:
        return 1

    def start(self, issue: RenderedIssue, *, throwaway_key: bool) -> None:
        folder = self._settings.outbox_dir
        self._outbox = Outbox(
            folder, issue, self._settings, self._clock, throwaway_key=throwaway_key
        )

    def send(self, body: RequestBody, what: str) -> str | None:
        self._started().add(body)
        return None

    def finish(self, report: SendReport, skipped: Mapping[str, int]) -> None:
        self._started().finish(report, skipped)

    def close(self) -> None:
        pass

    def _started(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("DryRunTransport.send before start")
        return self._outbox
