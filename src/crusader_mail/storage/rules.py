"""The roster's rules: how a reader's status and consent record change, whatever store holds them.

Each rule is a pure function of the reader as stored (``Subscriber | None``: ``None`` when the
address is not on the list) and returns the reader as they are to be stored. A call that
changes nothing returns ``old`` itself, so a store writes only when ``new is not old``. A store
applies exactly these functions: the files store to the rows of its list, another store to one
locked row.

- ``add`` puts a *new* reader on the list with the given status (cli, import). A reader already
  there keeps their status; only a missing name is filled in. A reader who left is never
  re-activated by an operator or an import: only their own ``request`` brings them back.
- ``request`` (double opt-in, step 1): a new address becomes ``pending``; ``pending`` stays
  pending (its request renewed); ``active`` stays active; a reader who left (unsubscribed,
  bounced, complained) stays as they left, leaving record and all: anyone can ask in their
  name, only they can confirm.
- ``confirm`` (step 2, with proof that the mailbox asked: a token made for the reader as they
  are now, see :mod:`crusader_mail.subscriptions.service`): ``pending`` -> ``active``; a reader
  who left -> ``active`` with a new subscription (joined and confirmed now, the leaving cleared);
  ``active`` is returned unchanged; an unknown reader raises :class:`SubscriberError`.
- ``unsubscribe``: any status -> ``unsubscribed``, at once; idempotent; ``None`` if unknown.
- ``mark(bounced|complained)``: a pending or active reader takes that status, a bounced one can
  become complained; a reader who already left keeps their status. ``None`` if unknown.
- ``forget`` (a store operation, no rule needed) erases the reader: no trace of the address
  is left in the roster, their consent history included.
- :func:`expired`: a request by mail or on the web never confirmed within the confirmation
  window; the store erases such readers (``Roster.expire_pending``) as it forgets one.

One reader per mailbox: addresses are compared by :func:`mailbox_key` (the whole address
lowercased), and the address is kept as first given. :func:`merge_variants` makes one reader
of rows kept before that rule (a list that held ``Carol@example.org`` and ``carol@example.org``).

Every change stamps the consent record with ``now`` (whole seconds, UTC):
``subscribed_at/via`` when someone joins or rejoins, ``confirmed_at/via`` when they become
active, ``left_at/via`` when they leave, ``ref`` (message id, file name, request id) and
``updated_at`` on every change. Names and refs are cleaned (:func:`clean_text`). The store also
appends each change to the reader's consent history (:func:`event`), never overwriting one.

:func:`staying` is the one rule for requests and signals from outside (an unsubscribe, a bounce,
a complaint, a confirmation link): they act only on a reader still on the list.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from crusader_mail.errors import InvalidAddress, SubscriberError
from crusader_mail.models import (
    ConsentAction,
    ConsentEvent,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.util.masking import mask_addresses, mask_email

MAX_NAME = 100
MAX_REF = 200
LEFT = frozenset({Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED})
STAYING = frozenset({Status.ACTIVE, Status.PENDING})

# --- addresses and text -----------------------------------------------------------------------


def normalize_email(raw: str) -> str:
    """The one form an address is stored and compared in; :class:`InvalidAddress` if it is none.

    Validated by email-validator without DNS. The local part is kept as given (it may be
    case-sensitive); the domain is lowercased and IDNA-encoded (``jane@MÜNCHEN.de`` and
    ``jane@xn--mnchen-3ya.de`` are one reader). Surrounding whitespace is ignored.
    """
    text = raw.strip()
    if not text:
        raise InvalidAddress("empty address")
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(f"{mask_email(text)}: {mask_addresses(str(error))}") from None
    return f"{info.local_part}@{info.ascii_domain}"


def mailbox_key(address: str) -> str:
    """What makes two normalized addresses one reader: the whole address lowercased.

    ``Carol@Example.org`` and ``carol@example.org`` reach one mailbox at nearly every provider,
    so they are one reader; the address itself is kept as first given."""
    return address.lower()


def reply_key(address: str) -> str:
    """The mailbox a reply to ``address`` lands in, for the reply limits: :func:`mailbox_key`
    with the plus-part of the local part dropped (``Victim+1@X.org`` -> ``victim@x.org``) and,
    at Gmail, the dots too (``v.ictim@gmail.com``): the spellings one mailbox receives under.
    Never a reader's identity (``jane+news@`` is a reader of its own), only whose inbox fills."""
    local, _, domain = mailbox_key(address.strip()).rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in _DOTLESS:
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


_DOTLESS = frozenset({"gmail.com", "googlemail.com"})


def normal_or_none(raw: str) -> str | None:
    """:func:`normalize_email`, or ``None`` when ``raw`` is not an address."""
    try:
        return normalize_email(raw)
    except InvalidAddress:
        return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(value: str, limit: int) -> str:
    """One line of plain text: control characters dropped, whitespace collapsed, at most
    ``limit`` characters (names come from mail headers: no header injection through them).
    A leading ``= + - @`` gets a ``'`` so a spreadsheet opening an export runs no formula."""
    text = " ".join(_CONTROL.sub(" ", value).split())[:limit].strip()
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def stamp(now: datetime) -> datetime:
    """The time a consent record keeps: UTC, whole seconds."""
    return now.astimezone(UTC).replace(microsecond=0)


# --- who may be changed from outside ----------------------------------------------------------


def staying(reader: Subscriber | None) -> bool:
    """Is this reader still on the list (active or pending)? Only such a reader is unsubscribed,
    bounced or complained by a request or a signal, or confirmed by a link: a reader who left
    keeps the status they left with until they ask to join again."""
    return reader is not None and reader.status in STAYING


# --- status changes ---------------------------------------------------------------------------


def add(
    old: Subscriber | None,
    email: str,
    *,
    name: str,
    status: Status,
    via: Source,
    ref: str,
    now: datetime,
) -> Subscriber:
    """A new reader ``email`` (normalized) with ``status``; a reader already there as they are,
    a missing name filled in: an operator cannot re-activate someone who left."""
    name = clean_text(name, MAX_NAME)
    now = stamp(now)
    if old is not None:
        if name and not old.name:
            return _changed(old, name=name, ref=clean_text(ref, MAX_REF), updated_at=now)
        return old
    joined = status in STAYING
    return Subscriber(
        email=email,
        name=name,
        status=status,
        subscribed_at=now if joined else None,
        subscribed_via=via if joined else None,
        confirmed_at=now if status is Status.ACTIVE else None,
        confirmed_via=via if status is Status.ACTIVE else None,
        left_at=None if joined else now,
        left_via=None if joined else via,
        ref=clean_text(ref, MAX_REF),
        updated_at=now,
    )


def request(
    old: Subscriber | None, email: str, *, name: str, via: Source, ref: str, now: datetime
) -> Subscriber:
    """Someone asks for ``email`` to join: a new address becomes ``pending``, a pending one
    is renewed; an active reader, or one who left, is returned unchanged."""
    name = clean_text(name, MAX_NAME)
    now = stamp(now)
    ref = clean_text(ref, MAX_REF)
    if old is None:
        return Subscriber(
            email=email,
            name=name,
            status=Status.PENDING,
            subscribed_at=now,
            subscribed_via=via,
            ref=ref,
            updated_at=now,
        )
    if old.status is Status.PENDING:
        return _changed(old, name=name or old.name, ref=ref, updated_at=now)
    return old  # active stays active; a reader who left stays left until they confirm


def confirm(
    old: Subscriber | None, email: str, *, via: Source, ref: str, now: datetime
) -> Subscriber:
    """``pending`` -> ``active``; a reader who left -> ``active`` with a new subscription
    (their own confirmation brings them back). An active reader is returned unchanged; an
    unknown reader (``email`` names them in the error) raises :class:`SubscriberError`."""
    if old is None:
        raise SubscriberError(f"{mask_email(email)} is not on the list: nothing to confirm")
    if old.status is Status.ACTIVE:
        return old
    now = stamp(now)
    ref = clean_text(ref, MAX_REF)
    if old.status is Status.PENDING:
        return _changed(
            old, status=Status.ACTIVE, confirmed_at=now, confirmed_via=via, ref=ref, updated_at=now
        )
    return _changed(  # rejoining after leaving: a new subscription, the old one in the history
        old,
        status=Status.ACTIVE,
        subscribed_at=now,
        subscribed_via=via,
        confirmed_at=now,
        confirmed_via=via,
        left_at=None,
        left_via=None,
        ref=ref,
        updated_at=now,
    )


def unsubscribe(
    old: Subscriber | None, *, via: Source, ref: str, now: datetime
) -> Subscriber | None:
    """Any status -> ``unsubscribed``, at once. ``None`` for an unknown reader."""
    if old is None or old.status is Status.UNSUBSCRIBED:
        return old
    return _left(old, Status.UNSUBSCRIBED, via=via, ref=ref, now=now)


def mark(
    old: Subscriber | None, status: Status, *, via: Source, ref: str, now: datetime
) -> Subscriber | None:
    """Record a hard bounce or a spam complaint. ``None`` for an unknown reader; a status
    other than ``bounced`` or ``complained`` raises :class:`SubscriberError`."""
    if status not in (Status.BOUNCED, Status.COMPLAINED):
        raise SubscriberError(f"mark() takes bounced or complained, not {status.value}")
    if old is None:
        return None
    upgrade = old.status is Status.BOUNCED and status is Status.COMPLAINED
    if old.status in LEFT and not upgrade:
        return old
    return _left(old, status, via=via, ref=ref, now=now)


def expired(reader: Subscriber, before: datetime) -> bool:
    """Is ``reader`` a request that was never confirmed: pending, asked for by mail or on the web
    (a confirmation was sent), and last renewed before ``before``? Readers an operator added as
    pending (cli, import) never expire."""
    changed = reader.updated_at or reader.subscribed_at
    return (
        reader.status is Status.PENDING
        and reader.subscribed_via in (Source.EMAIL, Source.WEB)
        and changed is not None
        and changed < before
    )


# --- preferences -----------------------------------------------------------------------------


def choose(
    reader: Subscriber | None, current: Preferences, wanted: Preferences, *, now: datetime
) -> tuple[Preferences, ConsentAction] | None:
    """An active ``reader`` choosing ``wanted`` over their ``current`` preferences at ``now``:
    the preferences to store (topics unique by case and sorted, the pause in whole seconds, a
    pause already over dropped) and the action of the history event (``pause``, ``resume``,
    else ``preferences``); ``None`` when nothing changes or the reader is not active."""
    if reader is None or reader.status is not Status.ACTIVE:
        return None
    new = settled(wanted, now)
    old = settled(current, now)
    if new == old:
        return None
    if new.paused(now) and not old.paused(now):
        return new, ConsentAction.PAUSE
    if old.paused(now) and not new.paused(now):
        return new, ConsentAction.RESUME
    return new, ConsentAction.PREFERENCES


def settled(prefs: Preferences, now: datetime) -> Preferences:
    """``prefs`` as stored: topics unique (case-insensitively) and sorted, the pause in whole
    seconds UTC and dropped once over."""
    seen: dict[str, str] = {}
    for topic in prefs.topics:
        seen.setdefault(topic.strip().lower(), topic.strip())
    topics = tuple(sorted((t for t in seen.values() if t), key=str.lower))
    until = stamp(prefs.paused_until) if prefs.paused_until is not None else None
    if until is not None and until <= now:
        until = None
    return Preferences(frequency=prefs.frequency, topics=topics, paused_until=until)


def to_restore(chosen: Iterable[tuple[str, Preferences]]) -> dict[str, Preferences]:
    """Preferences being restored as given (``Roster.restore_preferences``), by mailbox key
    (any spelling given is lowercased); a mailbox given twice raises :class:`SubscriberError`."""
    found: dict[str, Preferences] = {}
    for mailbox, prefs in chosen:
        key = mailbox_key(mailbox)
        if key in found:
            raise SubscriberError(f"{mask_email(key)} has two rows of preferences: nothing stored")
        found[key] = prefs
    return found


def check_on_list(wanted: Collection[str], found: Collection[str]) -> None:
    """:class:`SubscriberError` naming (masked) each mailbox of ``wanted`` not in ``found``:
    preferences are restored for readers on the list only (restore the readers first)."""
    missing = sorted(set(wanted) - set(found))
    if missing:
        shown = ", ".join(mask_email(key) for key in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SubscriberError(
            f"preferences of {len(missing)} mailbox(es) not on the list ({shown}{more}): "
            "restore the readers first; nothing stored"
        )


# --- the consent history ----------------------------------------------------------------------


def event(
    action: ConsentAction, new: Subscriber, *, via: Source, ref: str, now: datetime
) -> ConsentEvent:
    """The history entry of one change that made ``new`` (the reader as stored after it)."""
    return ConsentEvent(
        at=stamp(now),
        email=new.email,
        action=action,
        status=new.status,
        via=via,
        ref=clean_text(ref, MAX_REF),
    )


# --- one reader per mailbox -------------------------------------------------------------------

_LEFT_ORDER = (Status.COMPLAINED, Status.BOUNCED, Status.UNSUBSCRIBED)  # the strongest first


def merge_variants(variants: Sequence[Subscriber]) -> Subscriber:
    """One reader from rows whose addresses differ only in case, so consent is never widened:

    - status: a reader who left in any spelling stays left (complained before bounced before
      unsubscribed); else active if any spelling was confirmed; else pending;
    - the consent record (stamps, vias, ref) is the whole record of a row with that status,
      the one that holds the most (then the earliest subscribed), never pieced together;
    - the address is the earliest subscribed spelling (the first given; a row without a
      subscription time counts by its last change), the name the record's or else the first
      one given.
    """
    if not variants:
        raise ValueError("merge_variants needs at least one reader")
    by_age = sorted(variants, key=_joined_order)
    left = [sub for sub in variants if sub.status in LEFT]
    if left:
        strongest = min(_LEFT_ORDER.index(sub.status) for sub in left)
        pool = [sub for sub in left if sub.status is _LEFT_ORDER[strongest]]
    else:
        active = [sub for sub in variants if sub.status is Status.ACTIVE]
        pool = active or list(variants)
    record = min(pool, key=lambda sub: (-_filled(sub), _joined_order(sub)))
    name = record.name or next((sub.name for sub in by_age if sub.name), "")
    return record.model_copy(update={"email": by_age[0].email, "name": name})


def _joined_order(sub: Subscriber) -> tuple[bool, datetime, str]:
    joined = sub.subscribed_at or sub.updated_at
    return (joined is None, joined or datetime.max.replace(tzinfo=UTC), sub.email)


def _filled(sub: Subscriber) -> int:
    """How much of the consent record a row holds."""
    fields: tuple[object, ...] = (
        sub.name,
        sub.subscribed_at,
        sub.subscribed_via,
        sub.confirmed_at,
        sub.confirmed_via,
        sub.left_at,
        sub.left_via,
        sub.ref,
        sub.updated_at,
    )
    return sum(1 for value in fields if value)


def _left(old: Subscriber, status: Status, *, via: Source, ref: str, now: datetime) -> Subscriber:
    """``old`` having left with ``status`` (unsubscribed, bounced or complained) just now."""
    now = stamp(now)
    return _changed(
        old,
        status=status,
        left_at=now,
        left_via=via,
        ref=clean_text(ref, MAX_REF),
        updated_at=now,
    )


def _changed(old: Subscriber, **update: Any) -> Subscriber:
    """``old`` with ``update``; ``old`` itself when that changes nothing."""
    new = old.model_copy(update=update)
    return old if new == old else new
