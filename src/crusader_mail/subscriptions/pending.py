"""Readers an operator added as pending (``subscribers import --status pending``, ``subscribers
add --status pending``) are asked to confirm, reminded once, and erased if they never do.

::

    confirm_pending(service) -> PendingReport      a step of ``run`` and ``inbox process``

- Who: pending readers whose subscription came from an import or the command line. A request
  by mail or on the web got its confirmation when it was made and expires as before
  (:func:`~crusader_mail.subscriptions.service.expire_requests`).
- Asked: a reader whose consent history holds no ``request`` gets one confirmation
  (:meth:`Session.invite`): their request is renewed (a ``request`` event, ref ``ASK_REF``)
  and the mail queued with it, under the limits of every confirmation (one per mailbox a day,
  ``newsletter.replies_per_hour``), and leaving half of each hour's replies to the people who
  write in or use the form: a large import is asked over hours, never in one burst, and a
  reader held back is asked by a later call. A request in the history is never asked again.
- Reminded: ``REMIND_AFTER`` after their last request, once (:meth:`Session.remind`). The
  store's memory keeps that it went out (a keyed hash of the reader and the time they were
  added), so it is never sent twice. The reminder changes no reader: the first link keeps
  working, and both expire with the request.
- Erased: ``CONFIRM_DAYS`` after their last request, still pending: forgotten, history and
  queued mail with them, as an unconfirmed request by mail or on the web is.

The consent history is read once per call (:meth:`Roster.history`), and only when such a
reader is pending; the changes are one unit (the memory, then the roster).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from crusader_mail.models import ConsentAction, Source, Status, Subscriber
from crusader_mail.storage.contract import Roster
from crusader_mail.storage.rows import format_time
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.subscriptions.service import CONFIRM_DAYS, SubscriptionService

ASK_REF = "confirmation-mail"
REMIND_AFTER = timedelta(days=3)
ADDED_BY = frozenset({Source.IMPORT, Source.CLI})


@dataclass
class PendingReport:
    """What :func:`confirm_pending` did (counts of readers)."""

    asked: int = 0
    reminded: int = 0
    expired: int = 0
    held: int = 0  # due a confirmation or reminder the limits held back: asked next time

    def as_json(self) -> dict[str, int]:
        return {
            "asked": self.asked,
            "reminded": self.reminded,
            "expired": self.expired,
            "held": self.held,
        }


def added_pending(reader: Subscriber | None) -> bool:
    """Is ``reader`` pending because an operator added them (not by their own request)?"""
    return (
        reader is not None and reader.status is Status.PENDING and reader.subscribed_via in ADDED_BY
    )


def confirm_pending(service: SubscriptionService) -> PendingReport:
    """Ask, remind or erase each reader added as pending, as the module docstring says."""
    report = PendingReport()
    roster = service.store.roster
    waiting = {
        mailbox_key(r.email): r.email for r in roster.iter(Status.PENDING) if added_pending(r)
    }
    if not waiting:
        return report
    asked = last_requests(roster, waiting.keys())
    window = timedelta(days=CONFIRM_DAYS)
    now = service.clock.now()
    with service.session() as session:
        budget = session.spare_replies() - service.settings.newsletter.replies_per_hour // 2
        for key, email in waiting.items():
            reader = session.reader(email)
            if reader is None or not added_pending(reader):
                continue  # confirmed, left or gone meanwhile
            last = asked.get(key)
            if last is not None and last < now - window:  # as rules.expired: after the window
                session.roster.forget(reader.email)
                report.expired += 1
                continue
            if last is not None and (
                now - last < REMIND_AFTER or session.memory.seen(_reminded(reader))
            ):
                continue  # asked, and not due a reminder (or reminded already)
            if budget <= 0:
                report.held += 1
                continue
            if last is None:
                why_not = session.invite(reader, ASK_REF)
            else:
                why_not = session.remind(reader, last + window)
            if why_not:
                report.held += 1
            elif last is None:
                report.asked += 1
                budget -= 1
            else:
                session.memory.remember(_reminded(reader), now)
                report.reminded += 1
                budget -= 1
    return report


def last_requests(roster: Roster, keys: Collection[str]) -> dict[str, datetime]:
    """When each mailbox of ``keys`` last asked to join (its latest ``request`` event)."""
    wanted = set(keys)
    last: dict[str, datetime] = {}
    for event in roster.history():
        if event.action is not ConsentAction.REQUEST:
            continue
        key = mailbox_key(event.email)
        if key in wanted and (key not in last or event.at > last[key]):
            last[key] = event.at
    return last


def _reminded(reader: Subscriber) -> str:
    """The memory's key of the reminder to ``reader`` (keyed-hashed by the store)."""
    return f"confirmation-reminder:{mailbox_key(reader.email)}:{format_time(reader.subscribed_at)}"
