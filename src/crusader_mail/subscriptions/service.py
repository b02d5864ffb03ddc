"""The subscription service: what readers ask for by email and on the web, and the bounces,
complaints and webhook events that take them off the list.

::

    service = SubscriptionService(settings, clock, store, signer)
    service.find(purpose, token) -> address      # reading only: the page behind a link
    service.reader(address) -> Subscriber | None
    with service.session() as session:           # one unit of change (store.memory(), then
        session.subscribe / confirm / unsubscribe / unsubscribe_request / help   # the roster)
        session.confirm_token / unsubscribe_token / find / signal / record_event
        session.invite / remind / spare_replies    # readers added as pending (subscriptions.pending)
    expire_requests(store, clock) -> int          # erase requests never confirmed

- Subscribe is double opt-in: a new address becomes pending and gets a CONFIRM token, valid
  ``CONFIRM_DAYS`` and bound to the reader as they are (:func:`reader_state`): any change of
  the reader voids it, so it is spent by its own use and dead once the reader left or came
  back. A reader who left stays left (leaving record and all) until they confirm themselves;
  then they are active with a new subscription. Confirming needs the token, from the web
  button or, by mail, from the very address it was made for (:meth:`Session.confirm_token`).
  Requests never confirmed are erased after ``CONFIRM_DAYS`` (:func:`expire_requests`).
  Confirming queues the welcome (:mod:`crusader_mail.subscriptions.welcome`: the blog's best
  posts in the newsletter's templates, or the plain ``mail/welcome.txt`` when it cannot be
  rendered).
- Unsubscribe is immediate with a token or a proven sender; otherwise the reader gets a
  one-step confirmation (an UNSUBSCRIBE token, valid forever, any number of times: the
  unsubscribe links of every issue ever mailed keep working). Only an unsubscribe by mail
  gets a short goodbye by mail; on the web (a button, RFC 8058's one-click) the page is the
  goodbye and no more mail goes out.
- Preferences (frequency, topics, a pause) are chosen by an active reader on the page a
  PREFERENCES token opens (valid forever, as unsubscribe links): :meth:`Session.choose`.
- Requests and signals from outside change only a reader still on the list
  (:func:`crusader_mail.storage.rules.staying`). Any spelling of an address is its reader.
- A bounce or complaint by mail changes a reader only with proof that it answers mail we sent
  them: their signed mail id (:meth:`crusader_mail.util.tokens.Signer.mail_id`) returned in it
  (:meth:`Session.signal`). The addresses it merely names are "unverified" and keep their
  status; SendGrid's suppression lists and its signed Event Webhook are the main sources.
- Replies are queued with the change (:meth:`RosterChanges.queue_mail`), never sent inside it:
  the caller sends them once the change is stored, outside any lock
  (:func:`crusader_mail.subscriptions.outbox.send_queued`), so a slow or unreachable SendGrid
  never delays or undoes a change. A reply goes to the address as the list keeps it.
- At most one confirmation / reminder / already-subscribed / leave / help reply per mailbox per
  ``REPLY_WINDOW`` (by :func:`~crusader_mail.storage.rules.reply_key`: ``victim+1@`` and
  ``Victim@`` are one mailbox), and at most ``newsletter.replies_per_hour`` of them in any hour
  for all addresses together (one-hour slots in the memory); a queued reply counts. A request
  whose confirmation cannot go out changes nothing.

Each action returns one line saying what it did (addresses masked) for the caller's report.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import fill_placeholders
from crusader_mail.delivery.links import list_headers, personal_values, proof_header
from crusader_mail.errors import CrusaderMailError, TokenError, TokenExpired
from crusader_mail.models import OutgoingMessage, Preferences, Source, Status, Subscriber
from crusader_mail.settings import Settings
from crusader_mail.storage import rules
from crusader_mail.storage.contract import REPLY_WINDOW, HintOf, Memory, RosterChanges, Store
from crusader_mail.storage.rows import format_time
from crusader_mail.subscriptions.notices import Replies, ReplyKind
from crusader_mail.subscriptions.welcome import WelcomeMail
from crusader_mail.util.masking import mask_email
from crusader_mail.util.tokens import Purpose, Signer, token_hint

CONFIRM_DAYS = 7
CAP_WINDOW = timedelta(hours=1)
_MAX_AGE_DAYS: dict[Purpose, int | None] = {
    Purpose.CONFIRM: CONFIRM_DAYS,
    Purpose.UNSUBSCRIBE: None,
    Purpose.PREFERENCES: None,  # in every issue ever mailed, as the unsubscribe link
}


class SubscriptionService:
    """The service for one store and secret; :meth:`session` opens a unit of change."""

    def __init__(self, settings: Settings, clock: Clock, store: Store, signer: Signer) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.signer = signer
        self.replies = Replies(settings)
        self.welcome = WelcomeMail(settings, clock, store)

    def find(self, purpose: Purpose, token: str) -> str:
        """The reader ``token`` was made for, as the roster is stored now; :class:`TokenError`
        when there is none (or, for a confirmation, the reader changed since it was made),
        :class:`TokenExpired` for a confirmation older than its days."""
        roster = self.store.roster
        return _verify(self, purpose, token, roster.candidates, roster.get)

    def reader(self, email: str) -> Subscriber | None:
        return self.store.roster.get(email)

    def preferences(self, email: str) -> Preferences:
        """What the reader of ``email`` chose (the default when nothing)."""
        return self.store.roster.preferences().get(rules.mailbox_key(email), Preferences())

    def preferences_token(self, email: str) -> str:
        """The token of the reader's preferences page (it never expires)."""
        return self.signer.make(Purpose.PREFERENCES, email, self.clock.now())

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
        return _verify(self.service, purpose, token, self.roster.candidates, self.roster.get)

    def reader(self, email: str) -> Subscriber | None:
        return self.roster.get(email)

    # -- joining -------------------------------------------------------------------------------

    def subscribe(self, email: str, name: str, ref: str, via: Source) -> str:
        """Someone asks for ``email`` to join: a confirmation goes to it (see the module
        docstring); nothing changes when none may go out."""
        shown = mask_email(email)
        current = self.roster.get(email)
        if current is not None and current.status is Status.ACTIVE:
            email = current.email
            why_not = self._reply_limited(
                ReplyKind.ALREADY, email, headers=self._list_headers(email)
            )
            return f"{shown} is already subscribed; " + _said(why_not, "reply queued")
        why_not = self._why_no_reply(ReplyKind.CONFIRM, email)
        if why_not:
            return f"{shown}: no confirmation ({why_not}): nothing changed"
        reader = self._ask(email, name=name, via=via, ref=ref)
        if reader.status is Status.PENDING:
            return f"{shown} pending; confirmation queued"
        return f"{shown} is {reader.status.value}, until they confirm; confirmation queued"

    def _ask(
        self, email: str, *, name: str, via: Source, ref: str, added: bool = False
    ) -> Subscriber:
        """Record the request (:func:`~crusader_mail.storage.rules.request`) and queue its
        confirmation, whose token is bound to the reader as the request left them; the caller
        checked that a confirmation may go out (:meth:`_why_no_reply`)."""
        reader = self.roster.request(email, name=name, via=via, ref=ref)
        now = self.clock.now()
        token = self.service.signer.make(Purpose.CONFIRM, reader.email, now, reader_state(reader))
        values = {"added": "yes"} if added else None
        self._reply_limited(ReplyKind.CONFIRM, reader.email, token=token, values=values)
        return reader

    def invite(self, reader: Subscriber, ref: str) -> str:
        """Ask a reader an operator added as pending (an import, ``subscribers add``) to
        confirm: their request is renewed in their consent history (``ref``) and the
        confirmation queued; "" when done, else why not (nothing changed)."""
        why_not = self._why_no_reply(ReplyKind.CONFIRM, reader.email)
        if why_not:
            return why_not
        via = reader.subscribed_via or Source.IMPORT
        self._ask(reader.email, name="", via=via, ref=ref, added=True)
        return ""

    def remind(self, reader: Subscriber, expires: datetime) -> str:
        """The one reminder to a pending reader asked to confirm: a new link for the reader as
        they are (the first one keeps working), saying the address leaves the list at
        ``expires``; "" when queued, else why not. Changes no reader."""
        token = self.service.signer.make(
            Purpose.CONFIRM, reader.email, self.clock.now(), reader_state(reader)
        )
        values = {"expires": f"{expires.day} {expires:%B %Y}"}
        return self._reply_limited(ReplyKind.REMINDER, reader.email, token=token, values=values)

    def spare_replies(self) -> int:
        """How many automatic replies may still go out in this hour (``replies_per_hour`` less
        those of the last hour)."""
        now = self.clock.now()
        return sum(1 for _slot in free_slots(self.memory, _CAP, _cap_slots(self.settings), now))

    def confirm_token(self, token: str, ref: str, via: Source, sender: str | None = None) -> str:
        """Confirm with ``token``; by mail (``sender``: the From address) only when the
        message comes from the very mailbox the token was made for."""
        try:
            email = self.find(Purpose.CONFIRM, token)
        except TokenExpired:
            return "token expired: nothing changed"
        except TokenError:
            return "token not valid (or no longer): nothing changed"
        if sender is not None and rules.mailbox_key(sender) != rules.mailbox_key(email):
            return (
                f"token made for {mask_email(email)}, sent from {mask_email(sender)}: "
                "only its own mailbox confirms by mail; nothing changed"
            )
        return self.confirm(email, ref, via)

    def confirm(self, email: str, ref: str, via: Source) -> str:
        """Make the reader of ``email`` active (a pending one, or one who left and asked to
        come back): call it only with proof from their mailbox (a token checked by
        :meth:`find`)."""
        shown = mask_email(email)
        current = self.roster.get(email)
        if current is None or current.status is Status.ACTIVE:
            state = current.status.value if current else "not on the list"
            return f"{shown} is {state}: nothing changed"
        reader = self.roster.confirm(email, via=via, ref=ref)
        return f"{shown} confirmed: active; " + self._welcome(reader)

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
        if via is not Source.EMAIL:  # a page or a mail client's one-click: the page says it
            return f"{shown} unsubscribed; no goodbye mail (the page is the goodbye)"
        self.roster.queue_mail(self._message(ReplyKind.GOODBYE, left.email if left else email))
        return f"{shown} unsubscribed; goodbye queued"

    def choose(self, email: str, prefs: Preferences, ref: str, via: Source) -> str:
        """An active reader's choice of ``prefs`` (with proof: a PREFERENCES token checked by
        :meth:`find`), recorded in their consent history; nothing for anyone else."""
        shown = mask_email(email)
        current = self.roster.get(email)
        if self.roster.set_preferences(email, prefs, via=via, ref=ref) is None:
            return f"{shown} is {_state(current)}: nothing changed"
        return f"{shown}: preferences saved"

    def unsubscribe_request(self, email: str, proven: bool, ref: str, via: Source) -> str:
        """A reader asks to leave without a token: at once when ``proven`` (an authenticated
        sender), else they are asked to confirm with one step."""
        current = self.roster.get(email)
        if current is None or not rules.staying(current):
            return f"{mask_email(email)} is {_state(current)}: nothing changed, no reply"
        if proven:
            return self.unsubscribe(email, ref, via)
        token = self.service.signer.make(Purpose.UNSUBSCRIBE, current.email, self.clock.now())
        why_not = self._reply_limited(ReplyKind.LEAVE, current.email, token=token)
        return f"{mask_email(email)} not authenticated; " + _said(
            why_not, "asked to confirm leaving (reply queued)"
        )

    def help(self, email: str) -> str:
        return _said(self._reply_limited(ReplyKind.HELP, email), "help queued")

    # -- signals: bounces, complaints, webhook events ------------------------------------------

    def signal(
        self,
        status: Status,
        proofs: Collection[str],
        named: Collection[str],
        soft: Collection[str],
        ref: str,
        via: Source,
    ) -> str:
        """A bounce (``BOUNCED``: ``named`` failed for good, ``soft`` for now) or a complaint
        (``COMPLAINED``: ``named`` complained) that came by mail. Only a reader proven by one
        of ``proofs`` (mail ids found in it) changes: a complaint marks them; a bounce marks
        them when it reports a permanent failure and not a temporary one for them. Addresses
        named without proof are counted as unverified and keep their status."""
        proven = self._proven(proofs)
        named_keys = {rules.mailbox_key(a) for a in named}
        soft_keys = {rules.mailbox_key(a) for a in soft}
        done: list[str] = []
        for key, email in proven.items():
            failed = status is Status.COMPLAINED or (bool(named) and key not in soft_keys)
            if failed and self._leave(email, status, via=via, ref=ref):
                done.append(mask_email(email))
        unverified = len(named_keys - set(proven))
        parts = [f"{status.value}: {', '.join(done)}" if done else "no reader on the list changed"]
        if unverified:
            parts.append(
                f"unverified: {unverified} address(es) named without proof that it answers "
                "our mail, unchanged"
            )
        if soft_keys and status is Status.BOUNCED:
            parts.append(f"{len(soft_keys)} temporary failure(s) ignored")
        return "; ".join(parts)

    def _proven(self, proofs: Collection[str]) -> dict[str, str]:
        """The readers on the list the mail ids prove (mailbox key -> address)."""
        signer = self.service.signer
        found: dict[str, str] = {}
        for proof in proofs:
            email = signer.mail_id_reader(
                proof, lambda hint: self.roster.candidates(hint, signer.hint)
            )
            if email is not None:
                found[rules.mailbox_key(email)] = email
        return found

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

    def _welcome(self, reader: Subscriber) -> str:
        """Queue the welcome for ``reader``, just confirmed: the rendered one with their own
        values filled in, else the plain text reply. What was queued (a line's end)."""
        email = reader.email
        message = self._message(ReplyKind.WELCOME, email, headers=self._list_headers(email))
        rendered = self.service.welcome.rendered(message.subject)
        if isinstance(rendered, str):
            self.roster.queue_mail(message)
            return f"welcome queued (plain text: {rendered})"
        values = personal_values(self.settings, self.service.signer, reader, self.clock.now())
        html = fill_placeholders(rendered.html, values, html=True)
        text = fill_placeholders(rendered.text, values)
        self.roster.queue_mail(message.model_copy(update={"html": html, "text": text}))
        return "welcome queued"

    def _reply_limited(
        self,
        kind: ReplyKind,
        email: str,
        *,
        token: str = "",
        headers: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> str:
        """Queue the reply unless :meth:`_why_no_reply` says why not: that reason ("" when
        queued)."""
        why_not = self._why_no_reply(kind, email)
        if why_not:
            return why_not
        now = self.clock.now()
        self.roster.queue_mail(
            self._message(kind, email, token=token, headers=headers, values=values)
        )
        self.memory.replied(kind.value, rules.reply_key(email), now)
        slot = self._free_slot(now)
        if slot is not None:
            self.memory.replied(_CAP, slot, now)
        return ""

    def _why_no_reply(self, kind: ReplyKind, email: str) -> str:
        """Why no ``kind`` reply may go to ``email`` now ("" when one may): one went to its
        mailbox within ``REPLY_WINDOW``, or ``replies_per_hour`` went out in the last hour."""
        now = self.clock.now()
        if not self.memory.may_reply(kind.value, rules.reply_key(email), now, REPLY_WINDOW):
            return "one was already queued for this mailbox in the last 24 hours"
        if self._free_slot(now) is None:
            cap = self.settings.newsletter.replies_per_hour
            return f"{cap} automatic replies went out in the last hour, the most there may be"
        return ""

    def _free_slot(self, now: datetime) -> str | None:
        """One of the ``replies_per_hour`` slots not used in the last hour, if any."""
        return next(free_slots(self.memory, _CAP, _cap_slots(self.settings), now), None)

    def _message(
        self,
        kind: ReplyKind,
        email: str,
        *,
        token: str = "",
        headers: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> OutgoingMessage:
        """A reply to ``email``, with its proof header (a bounce of it can be verified)."""
        headers = {**(headers or {}), **proof_header(self.service.signer, email, kind.value)}
        return self.service.replies.build(kind, email, token=token, headers=headers, values=values)


_CAP = "hourly-cap"
"""The memory's reply kind of the hourly slots (:meth:`Session._free_slot`)."""


def _cap_slots(settings: Settings) -> list[str]:
    return [
        f"slot-{number}@replies.invalid" for number in range(settings.newsletter.replies_per_hour)
    ]


def free_slots(
    memory: Memory, kind: str, slots: Iterable[str], now: datetime, window: timedelta = CAP_WINDOW
) -> Iterator[str]:
    """The ``slots`` not used for ``kind`` within ``window`` (a limit of N per window is N
    slots: one is taken, :meth:`Memory.replied`, per use)."""
    return (slot for slot in slots if memory.may_reply(kind, slot, now, window))


def reader_state(reader: Subscriber | None) -> str:
    """What a confirmation token is bound to: the reader's status and last change (any change
    voids the token, see :mod:`crusader_mail.util.tokens`)."""
    if reader is None:
        return "absent"
    return f"{reader.status.value}@{format_time(reader.updated_at)}"


def expire_requests(store: Store, clock: Clock) -> int:
    """Erase the requests to join never confirmed within ``CONFIRM_DAYS`` (their tokens have
    expired): how many (:meth:`Roster.expire_pending`)."""
    return store.roster.expire_pending(clock.now() - timedelta(days=CONFIRM_DAYS))


def _verify(
    service: SubscriptionService,
    purpose: Purpose,
    token: str,
    candidates: Callable[[bytes, HintOf], list[str]],
    reader: Callable[[str], Subscriber | None],
) -> str:
    """The one reader among ``candidates`` ``token`` was made for, looked up by the token's
    hint (then, for a token mailed before tokens named the mailbox, by its old-form hint); a
    confirmation token must have been made for the reader as they are now (``reader``) and
    expires after ``CONFIRM_DAYS``."""
    hint = token_hint(token)
    if hint is None:
        raise TokenError("this link is not valid (it may have been altered)")
    signer, now, days = service.signer, service.clock.now(), _MAX_AGE_DAYS[purpose]
    state_of = None
    if purpose is Purpose.CONFIRM:

        def state_of(email: str) -> str:
            return reader_state(reader(email))

    try:
        return signer.verify(purpose, token, candidates(hint, signer.hint), now, days, state_of)
    except TokenExpired:
        raise
    except TokenError:
        old = candidates(hint, signer.old_hint)
        return signer.verify(purpose, token, old, now, days, state_of)


def _state(reader: Subscriber | None) -> str:
    return reader.status.value if reader else "not on the list"


def _said(why_not: str, done: str) -> str:
    return f"no reply ({why_not})" if why_not else done
