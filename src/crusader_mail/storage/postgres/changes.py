"""One unit of change of the PostgreSQL store's roster (:class:`PgChanges`, what
:meth:`PgRoster.edit <.roster.PgRoster.edit>` yields): one transaction, in pipeline mode (a
write is not waited for: it travels with the next query). Every row it reads or changes is
locked first (``SELECT ... FOR UPDATE`` by mailbox, or by hint when a token is looked up) and
changed by :mod:`crusader_mail.storage.rules` applied to the locked row; a reader inserted by
another unit between the lookup and the insert is read again and the rule applied again
(:data:`RACES` times). Each change appends its event to ``consent_events`` in the same
transaction; :func:`erase` deletes a reader with their events and queued mail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from psycopg import Pipeline

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import (
    ConsentAction,
    ConsentEvent,
    Frequency,
    OutgoingMessage,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage import rules
from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.postgres import history
from crusader_mail.storage.postgres.connections import Connection
from crusader_mail.storage.postgres.hints import Hints
from crusader_mail.storage.postgres.mail import queue_mail
from crusader_mail.storage.postgres.records import reader, select, values
from crusader_mail.util.masking import mask_email

RACES = 5  # times a unit reads a reader again after another unit inserted them first

R = TypeVar("R", Subscriber, Subscriber | None)
Rule = Callable[[Subscriber | None, str, datetime], R]
"""A rule of :mod:`crusader_mail.storage.rules` on (the stored reader, the address, now)."""


@dataclass(frozen=True)
class Change:
    """What a call changes a reader by: its history event's action, ``via`` and ``ref``."""

    action: ConsentAction
    via: Source
    ref: str


ONE = select("WHERE mailbox = %s")
_LOCK_ONE = select("WHERE mailbox = %s FOR UPDATE")
_INSERT = history.with_event(
    "INSERT INTO readers VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (mailbox) DO NOTHING RETURNING mailbox"
)  # rowcount 0: another unit inserted the reader first (no row, no event)
_UPDATE = history.with_event(
    "UPDATE readers SET name = %s, status = %s, subscribed_at = %s, subscribed_via = %s, "
    "confirmed_at = %s, confirmed_via = %s, left_at = %s, left_via = %s, ref = %s, "
    "updated_at = %s WHERE mailbox = %s RETURNING mailbox"
)
_PREFERENCES_OF = "SELECT frequency, topics, paused_until FROM preferences WHERE mailbox = %s"
SET_PREFERENCES = (
    "INSERT INTO preferences (mailbox, frequency, topics, paused_until) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (mailbox) DO UPDATE SET frequency = EXCLUDED.frequency, "
    "topics = EXCLUDED.topics, paused_until = EXCLUDED.paused_until"
)
_INSERT_EVENT = (
    "INSERT INTO consent_events (mailbox, at, email, action, status, via, ref) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def preference_row(
    mailbox: str, prefs: Preferences
) -> tuple[str, str | None, list[str], datetime | None]:
    """The parameters of :data:`SET_PREFERENCES` for ``prefs``."""
    frequency = prefs.frequency.value if prefs.frequency is not None else None
    return (mailbox, frequency, list(prefs.topics), prefs.paused_until)


def preferences_of(
    frequency: str | None, topics: list[str], paused: datetime | None
) -> Preferences:
    return Preferences(
        frequency=Frequency(frequency) if frequency else None,
        topics=tuple(topics),
        paused_until=paused,
    )


class PgChanges:
    """The readers during one unit of change (one transaction on ``conn``).

    It caches the readers locked so far by mailbox (``None``: not on the list), so reads
    see the changes made; :meth:`candidates` locks and caches the readers it finds. In
    ``pipeline`` mode (:meth:`PgRoster.edit`) a write whose result is not needed is not waited
    for: it goes to the server with the next query that is. With ``only`` (a bulk update offering one reader), other readers
    look absent and changing one raises :class:`SubscriberError`."""

    def __init__(
        self,
        conn: Connection,
        clock: Clock,
        hints: Hints,
        hint_of: HintOf | None,
        *,
        only: Subscriber | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self._conn = conn
        self._pipeline = pipeline
        self._clock = clock
        self._hints = hints
        self._hint_of = hint_of
        self._rows: dict[str, Subscriber | None] = {}
        self._stored: set[str] = set()  # addresses read from the table: normal already
        self._only = rules.mailbox_key(only.email) if only is not None else None
        self._offered = only.email if only is not None else ""
        if only is not None:
            self._rows[rules.mailbox_key(only.email)] = only
        self._open = True
        self.changed = False  # a reader was changed or forgotten
        self.dirty = False  # something was written (a change, or mail queued)

    # -- reading -------------------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        self._check_open()
        key = self._normal(email)
        return self._row(rules.mailbox_key(key)) if key is not None else None

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses on the list now (this unit's changes included) whose hint is ``hint``;
        their readers are locked and read in the same query (a token's reader is the one a
        unit changes next)."""
        self._check_open()
        if self._only is not None:  # a bulk update's unit holds its one reader only
            found = self._hints.find(self._conn, hint, hint_of)
            return [email for email in found if rules.mailbox_key(email) == self._only]
        emails = []
        for email, row in self._hints.find_locked(self._conn, hint, hint_of):
            if row is not None:
                self._rows.setdefault(rules.mailbox_key(email), reader(row))
            self._stored.add(email)
            emails.append(email)
        return emails

    # -- changes -------------------------------------------------------------------------------

    def add(
        self,
        email: str,
        *,
        name: str = "",
        status: Status = Status.ACTIVE,
        via: Source,
        ref: str = "",
    ) -> Subscriber:
        def rule(old: Subscriber | None, key: str, now: datetime) -> Subscriber:
            return rules.add(old, key, name=name, status=status, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.ADD, via, ref), strict=True)

    def request(self, email: str, *, name: str = "", via: Source, ref: str = "") -> Subscriber:
        def rule(old: Subscriber | None, key: str, now: datetime) -> Subscriber:
            return rules.request(old, key, name=name, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.REQUEST, via, ref), strict=True)

    def confirm(self, email: str, *, via: Source, ref: str = "") -> Subscriber:
        def rule(old: Subscriber | None, key: str, now: datetime) -> Subscriber:
            return rules.confirm(old, key, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.CONFIRM, via, ref), strict=True)

    def unsubscribe(self, email: str, *, via: Source, ref: str = "") -> Subscriber | None:
        def rule(old: Subscriber | None, _key: str, now: datetime) -> Subscriber | None:
            return rules.unsubscribe(old, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.UNSUBSCRIBE, via, ref), strict=False)

    def mark(self, email: str, status: Status, *, via: Source, ref: str = "") -> Subscriber | None:
        def rule(old: Subscriber | None, _key: str, now: datetime) -> Subscriber | None:
            return rules.mark(old, status, via=via, ref=ref, now=now)

        action = ConsentAction.BOUNCE if status is Status.BOUNCED else ConsentAction.COMPLAIN
        return self._apply(email, rule, Change(action, via, ref), strict=False)

    def forget(self, email: str) -> bool:
        """Erase the reader's row, their history (this unit's events included) and their
        queued mail. ``True`` if they were on the list."""
        self._check_open()
        key = self._normal(email)
        if key is None:
            return False
        mailbox = rules.mailbox_key(key)
        if self._row(mailbox) is None:
            return False
        erase(self._conn, [mailbox])
        self._rows[mailbox] = None
        self.changed = self.dirty = True
        return True

    def preferences(self, email: str) -> Preferences:
        """The reader's row of ``preferences`` (the default when there is none)."""
        self._check_open()
        key = self._normal(email)
        if key is None:
            return Preferences()
        found = self._conn.execute(_PREFERENCES_OF, [rules.mailbox_key(key)]).fetchone()
        return preferences_of(*found) if found is not None else Preferences()

    def set_preferences(
        self, email: str, prefs: Preferences, *, via: Source, ref: str = ""
    ) -> Subscriber | None:
        """An active reader's choice (:func:`rules.choose`), their row locked: the row of
        ``preferences`` written (deleted for the default) with its event."""
        self._check_open()
        key = self._normal(email)
        found = self._row(rules.mailbox_key(key)) if key is not None else None
        if found is None or found.status is not Status.ACTIVE:
            return None
        mailbox = rules.mailbox_key(found.email)
        now = self._clock.now()
        chosen = rules.choose(found, self.preferences(found.email), prefs, now=now)
        if chosen is None:
            return found
        new, action = chosen
        if new.is_default:
            self._conn.execute("DELETE FROM preferences WHERE mailbox = %s", [mailbox])
        else:
            self._conn.execute(SET_PREFERENCES, preference_row(mailbox, new))
        event = rules.event(action, found, via=via, ref=ref, now=now)
        self._conn.execute(_INSERT_EVENT, history.row(event))
        self.changed = self.dirty = True
        return found

    def queue_mail(self, message: OutgoingMessage) -> None:
        """Store ``message`` in this unit's transaction: it is kept only if the change is."""
        self._check_open()
        queue_mail(self._conn, message, self._clock.now())
        self.dirty = True

    # -- internals -----------------------------------------------------------------------------

    def close(self) -> None:
        self._open = False

    def _normal(self, email: str) -> str | None:
        """:func:`rules.normal_or_none` of ``email``; an address this unit found in the table
        (a token's reader) was stored normal, and is taken as it is."""
        return email if email in self._stored else rules.normal_or_none(email)

    def _check_open(self) -> None:
        if not self._open:
            raise SubscriberError(
                "the roster is closed: change the list inside `with roster.edit() as changes:`"
            )

    def _row(self, mailbox: str) -> Subscriber | None:
        """The reader with ``mailbox``, locked for this unit (cached once read)."""
        if mailbox in self._rows:
            return self._rows[mailbox]
        if self._only is not None:
            return None  # a bulk update's unit holds its one reader only
        row = self._conn.execute(_LOCK_ONE, [mailbox]).fetchone()
        found = self._rows[mailbox] = reader(row) if row is not None else None
        return found

    def _apply(self, email: str, rule: Rule[R], change: Change, *, strict: bool) -> R:
        """``rule`` applied to the locked reader ``email`` at the clock's now, and stored with
        ``change``'s event when it changed them."""
        self._check_open()
        now = self._clock.now()
        key = rules.normalize_email(email) if strict else self._normal(email)
        if key is None:
            return rule(None, email, now)
        mailbox = rules.mailbox_key(key)
        for _attempt in range(RACES):
            old = self._row(mailbox)
            new = rule(old, key, now)
            if new is None or new is old:
                return new
            event = rules.event(change.action, new, via=change.via, ref=change.ref, now=now)
            if self._write(mailbox, old, new, event):
                return new
            del self._rows[mailbox]  # another unit added them meanwhile: read them again
        raise StateError(f"{mask_email(key)} kept changing under this unit of change; try again")

    def _write(
        self, mailbox: str, old: Subscriber | None, new: Subscriber, event: ConsentEvent
    ) -> bool:
        """Store ``new`` and append ``event``; ``False`` when ``old`` was ``None`` and another
        unit inserted the reader first (nothing written)."""
        if self._only is not None and mailbox != self._only:
            raise SubscriberError(
                f"a bulk update offered {mask_email(self._offered)} and changed another "
                "address: it may change only the reader it is given"
            )
        event_row = history.row(event)[1:]  # its mailbox: the row's, as written
        if old is None:
            hint = self._hint_of(new.email) if self._hint_of is not None else None
            inserted = self._conn.execute(_INSERT, (*values(new, hint), *event_row))
            if self._pipeline is not None:
                self._pipeline.sync()  # its rowcount is in
            if inserted.rowcount == 0:
                return False
        else:
            self._conn.execute(_UPDATE, (*values(new, None)[2:12], mailbox, *event_row))
        self._rows[mailbox] = new
        self.changed = self.dirty = True
        return True


def erase(conn: Connection, mailboxes: list[str]) -> None:
    """Delete these readers (by mailbox), their history and their queued mail, in ``conn``'s
    transaction."""
    conn.execute("DELETE FROM readers WHERE mailbox = ANY(%s)", [mailboxes])
    conn.execute("DELETE FROM consent_events WHERE mailbox = ANY(%s)", [mailboxes])
    conn.execute("DELETE FROM mail_queue WHERE mailbox = ANY(%s)", [mailboxes])
