"""Sending the replies a change queued (:meth:`RosterChanges.queue_mail`), after the change.

::

    send_queued(store, mailer, clock) -> OutboxReport     the one drain of ``store.mail``
    Drainer(store, mailer, clock)()                       the same, one at a time per process

The subscription service never sends: it queues each reply with its change, so a reply is
stored with the change or not at all. Every caller that changes readers sends what is due once
its change is stored, outside every lock: the web app after its response has gone out,
``inbox process`` and ``subscribers add/import`` at their end, ``run`` at its start (replies
left over from the server or an earlier run). A reply that cannot be sent stays queued and is
tried again by a later drain, with a growing wait, for ``MAIL_KEEP``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from crusader_mail.clock import Clock
from crusader_mail.delivery.mailer import Mailer
from crusader_mail.errors import CrusaderMailError
from crusader_mail.storage.contract import Store

CLAIM = 100  # mails claimed at once


@dataclass
class OutboxReport:
    """What a drain did: replies sent, replies that failed (kept to be tried again), and
    replies still queued afterwards (failed ones, and any not due yet)."""

    sent: int = 0
    failed: int = 0
    waiting: int = 0

    def as_json(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "waiting": self.waiting}

    def line(self) -> str:
        """One line for a command's output (no addresses)."""
        text = f"replies: {self.sent} sent"
        if self.failed:
            text += f", {self.failed} failed (kept, tried again later)"
        return text + f", {self.waiting} waiting"


def send_queued(store: Store, mailer: Mailer, clock: Clock) -> OutboxReport:
    """Send every queued reply that is due, ``CLAIM`` at a time. The first one the mailer
    cannot send (after its own retries) ends the drain: SendGrid is likely down, so it is
    marked failed (tried again after a wait) and the rest stay due for the next drain."""
    report = OutboxReport()
    stopped = False
    while not stopped:
        with store.mail.claim(clock.now(), CLAIM) as batch:
            if not batch.mails:
                break
            for mail in batch.mails:
                try:
                    mailer.send_one(mail.message)
                except CrusaderMailError as error:
                    batch.failed(mail.id, str(error))
                    report.failed += 1
                    stopped = True
                    break
                batch.done(mail.id)
                report.sent += 1
    report.waiting = store.mail.waiting()
    return report


class Drainer:
    """:func:`send_queued` for a server: one drain at a time in this process. A call while a
    drain runs returns at once and makes the running drain go round once more, so a reply
    queued meanwhile is never left behind, and a hundred requests start one drain, not a
    hundred."""

    def __init__(self, store: Store, mailer: Mailer, clock: Clock) -> None:
        self.store = store
        self.mailer = mailer
        self.clock = clock
        self._running = threading.Lock()
        self._again = threading.Event()

    def __call__(self) -> None:
        self._again.set()
        while self._again.is_set():
            if not self._running.acquire(blocking=False):
                return  # the drain running now sees the flag when it ends, and goes again
            try:
                self._again.clear()
                send_queued(self.store, self.mailer, self.clock)
            finally:
                self._running.release()
