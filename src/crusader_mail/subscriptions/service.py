"""The subscription service: what readers ask for by email and on the web, and the bounces,
complaints and webhook events that take them off the list.

::

    service = SubscriptionService(settings, clock, store, signer)
    service.find(purpose, token) -> address      # reading only: the page behind a link
    service.reader(address) -> Subscriber | None
    with service.session() as session:           # one unit of change (store.memory(), then
        session.subscribe / confirm / unsubscribe / unsubscribe_request / help   # the roster)
        session.confirm_token / unsubscribe_token / find / mark / record_event

- Subscribe is double opt-in: the address becomes pending and gets a CONFIRM token, valid
  ``CONFIRM_DAYS``. The token alone confirms: only the mailbox it was sent to holds it.
- Unsubscribe is immediate with a token or a proven sender; otherwise the reader gets a
  one-step confirmation (an UNSUBSCRIBE token, valid forever). A goodbye follows.
- Requests and signals from outside change only a reader still on the list
  (:func:`crusader_mail.storage.rules.staying`). Any spelling of an address is its reader.
- Replies are queued with the change (:meth:`RosterChanges.queue_mail`), never sent inside it:
  the caller sends them once the change is stored, outside any lock
  (:func:`crusader_mail.subscriptions.outbox.send_queued`), so a slow or unreachable SendGrid
  never delays or undoes a change. A reply goes to the address as the list keeps it.
- At most one confirmation / already-subscribed / leave / help reply per address per
  ``REPLY_WINDOW`` (the store's memory keeps the reply times); a queued reply counts.

Each action returns one line saying what it did (addresses masked) for the caller's report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from crusader_mail.clock import Clock
from crusader_mail.delivery.links import list_headers
from crusader_mail.errors import CrusaderMailError, TokenError, TokenExpired
from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.settings import Settings
from crusader_mail.storage import rules
from crusader_mail.storage.contract import REPLY_WINDOW, HintOf, Memory, RosterChanges, Store
from crusader_mail.subscriptions.notices import Replies, ReplyKind
from crusader_mail.util.masking import mask_email
from crusader_mail.util.tokens import Purpose, Signer, token_hint

CONFIRM_DAYS = 7
_MAX_AGE_DAYS: dict[Purpose, int | None] = {
    Purpose.CONFIRM: CONFIRM_DAYS,
    Purpose.UNSUBSCRIBE: None,
}


class SubscriptionService:
    """The service for one store and secret; :meth:`session` opens a unit of change."""

    def __init__(self, settings: Settings, clock: Clock, store: Store, signer: Signer) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.signer = signer
        self.replies = Replies(settings)

    def find(self, purpose: Purpose, token: str) -> str:
        """The reader ``token`` was made for, as the roster is stored now; :class:`TokenError`
        when there is none, :class:`TokenExpired` for a confirmation older than its days."""
        return _verify(self, purpose, token, self.store.roster.candidates)

    def reader(self, email: str) -> Subscriber | None:
        return self.store.roster.get(email)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """The memory and the roster locked for the block (in that order), stored when it
        ends without an exception."""
        with self.store.memory() as memory, self.store.roster.edit() as changes:
            yield Session(self, changes, memory)


class Session:
    """One unit of change: the actions, each following the rules in the module docstring."""

    def __init__(
        self, service: SubscriptionService, changes: RosterChanges, memory: Memory
    ) -> None:
        self.service = service
        self.settings = service.settings
        self.clock = service.clock
        self.roster = changes
        self.memory = memory

    # -- finding readers -----------------------------------------------------------------------

    def find(self, purpose: Purpose, token: str) -> str:
        """:meth:`SubscriptionService.find`, seeing the changes of this session."""
        return _verify(self.service, purpose, token, self.roster.candidates)

    def reader(self, email: str) -> Subscriber | None:
        return self.roster.get(email)

    # -- joining -------------------------------------------------------------------------------

    def subscribe(self, email: str, name: str, ref: str, via: Source) -> str:
        shown = mask_email(email)
        current = self.roster.get(email)
        if current is not None and current.status is Status.ACTIVE:
            email = current.email
            queued = self._reply_limited(
                ReplyKind.ALREADY, email, headers=self._list_headers(email)
            )
            return f"{shown} is already subscribed; " + _said(queued, "reply queued")
        email = self.roster.request(email, name=name, via=via, ref=ref).email
        token = self.service.signer.make(Purpose.CONFIRM, email, self.clock.now())
        queued = self._reply_limited(ReplyKind.CONFIRM, email, token=token)
        return f"{shown} pending; " + _said(queued, "confirmation queued")

    def confirm_token(self, token: str, ref: str, via: Source) -> str:
        try:
            email = self.find(Purpose.CONFIRM, token)
        except TokenExpired:
            return "token expired: nothing changed"
        except TokenError:
            return "token not valid: nothing changed"
        return self.confirm(email, ref, via)

    def confirm(self, email: str, ref: str, via: Source) -> str:
        shown = mask_email(email)
        current = self.roster.get(email)
        if current is None or current.status is not Status.PENDING:
            state = current.status.value if current else "not on the list"
            return f"{shown} is {state}: nothing changed"
        email = self.roster.confirm(email, via=via, ref=ref).email
        self._queue(ReplyKind.WELCOME, email, headers=self._list_headers(email))
        return f"{shown} confirmed: active; welcome queued"

    # -- leaving -------------------------------------------------------------------------------

    def unsubscribe_token(self, token: str, ref: str, via: Source) -> str:
        try:
            email = self.find(Purpose.UNSUBSCRIBE, token)
        except TokenError:
            return "token not valid: nothing changed"
        return self.unsubscribe(email, ref, via)

    def unsubscribe(self, email: str, ref: str, via: Source) -> str:
        shown = mask_email(email)
        current = self.roster.get(email)
        if not rules.staying(current):
            return f"{shown} is {_state(current)}: nothing changed"
        left = self.roster.unsubscribe(email, via=via, ref=ref)
        self._queue(ReplyKind.GOODBYE, left.email if left else email)
        return f"{shown} unsubscribed; goodbye queued"

    def unsubscribe_request(self, email: str, proven: bool, ref: str, via: Source) -> str:
        """A reader asks to leave without a token: at once when ``proven`` (an authenticated
        sender), else they are asked to confirm with one step."""
        current = self.roster.get(email)
        if current is None or not rules.staying(current):
            return f"{mask_email(email)} is {_state(current)}: nothing changed, no reply"
        if proven:
            return self.unsubscribe(email, ref, via)
        token = self.service.signer.make(Purpose.UNSUBSCRIBE, current.email, self.clock.now())
        queued = self._reply_limited(ReplyKind.LEAVE, current.email, token=token)
        return f"{mask_email(email)} not authenticated; " + _said(
            queued, "asked to confirm leaving (reply queued)"
        )

    def help(self, email: str) -> str:
        return _said(self._reply_limited(ReplyKind.HELP, email), "help queued")

    # -- signals: bounces, complaints, webhook events ------------------------------------------

    def mark(
        self, emails: Iterable[str], status: Status, ref: str, soft: Iterable[str], via: Source
    ) -> str:
        """Hard-bounced or complaining addresses; ``soft`` (temporary failures) are counted
        only."""
        done: list[str] = []
        for raw_email in emails:
            email = rules.normal_or_none(raw_email)
            if email is not None and self._leave(email, status, via=via, ref=ref):
                done.append(mask_email(email))
        soft_count = len(list(soft))
        parts = [f"{status.value}: {', '.join(done)}" if done else "no reader on the list changed"]
        if soft_count:
            parts.append(f"{soft_count} temporary failure(s) ignored")
        return "; ".join(parts)

    def record_event(self, event_id: str, email: str | None, change: Status | None) -> str:
        """One SendGrid event, once: ``"duplicates"`` when it was handled before, ``"recorded"``
        when it names a change and an address (the reader changes if still on the list),
        ``"ignored"`` otherwise."""
        if self.memory.event_seen(event_id):
            return "duplicates"
        outcome = "ignored"
        if change is not None and email is not None:
            self._leave(email, change, via=Source.SENDGRID, ref=f"sendgrid:{event_id}"[:200])
            outcome = "recorded"
        self.memory.remember_event(event_id, self.clock.now())
        return outcome

    def _leave(self, email: str, status: Status, *, via: Source, ref: str) -> bool:
        """Unsubscribe or mark a reader still on the list; ``False`` for anyone else."""
        if not rules.staying(self.roster.get(email)):
            return False
        if status is Status.UNSUBSCRIBED:
            self.roster.unsubscribe(email, via=via, ref=ref)
        else:
            self.roster.mark(email, status, via=via, ref=ref)
        return True

    # -- replies -------------------------------------------------------------------------------

    def _list_headers(self, email: str) -> dict[str, str]:
        try:
            made = list_headers(self.settings, self.service.signer, email, self.clock.now())
        except CrusaderMailError:
            return {}
        return {k: v for k, v in made.items() if k.lower().startswith("list-unsubscribe")}

    def _reply_limited(
        self, kind: ReplyKind, email: str, *, token: str = "", headers: dict[str, str] | None = None
    ) -> bool:
        """Queue the reply unless one was queued within ``REPLY_WINDOW`` (``False`` then)."""
        now = self.clock.now()
        if not self.memory.may_reply(kind.value, email, now, REPLY_WINDOW):
            return False
        self._queue(kind, email, token=token, headers=headers)
        self.memory.replied(kind.value, email, now)
        return True

    def _queue(
        self, kind: ReplyKind, email: str, *, token: str = "", headers: dict[str, str] | None = None
    ) -> None:
        message = self.service.replies.build(kind, email, token=token, headers=headers)
        self.roster.queue_mail(message)


def _verify(
    service: SubscriptionService,
    purpose: Purpose,
    token: str,
    candidates: Callable[[bytes, HintOf], list[str]],
) -> str:
    """The one reader among ``candidates`` ``token`` was made for, looked up by the token's
    hint (then, for a token mailed before tokens named the mailbox, by its old-form hint); a
    confirmation token expires after ``CONFIRM_DAYS``."""
    hint = token_hint(token)
    if hint is None:
        raise TokenError("this link is not valid (it may have been altered)")
    signer, now, days = service.signer, service.clock.now(), _MAX_AGE_DAYS[purpose]
    try:
        return signer.verify(purpose, token, candidates(hint, signer.hint), now, days)
    except TokenExpired:
        raise
    except TokenError:
        return signer.verify(purpose, token, candidates(hint, signer.old_hint), now, days)


def _state(reader: Subscriber | None) -> str:
    return reader.status.value if reader else "not on the list"


def _said(queued: bool, done: str) -> str:
    return done if queued else "no reply (one was already queued in the last 24 hours)"
