"""Signed, compact, address-bound tokens for unsubscribe and confirmation.

A token is short enough for the local part of a plus-address (``news+unsubscribe-<token>@...``,
local parts are at most 64 octets) and case-insensitive, because some mail servers lowercase
local parts. It is ``base32(day ‖ address-hint ‖ mac)``, 29 characters:

- ``day`` (2 bytes): days since 1970-01-01 when it was issued, for expiry;
- ``hint`` (6 bytes): the first bytes of a keyed hash of the mailbox key, so the holder can
  find the address among the subscribers without the token revealing it;
- ``mac`` (10 bytes): HMAC-SHA256 over purpose, mailbox key and day with ``secret_key``.

The mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`, the address lowercased)
makes a token good for every spelling of its mailbox. Tokens mailed before hashed the address
with only its domain lowercased (the *old form*; the same bytes for an all-lowercase address):
:meth:`Signer.verify` accepts both forms, :meth:`Signer.make` makes only the new one, and
:meth:`Signer.old_hint` lets the holder look an old token's address up.

A token is bound to one purpose and one mailbox: a forged token, one made for another address
or another purpose, or an expired one, raises :class:`~crusader_mail.errors.TokenError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from crusader_mail.errors import TokenError, TokenExpired
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.addresses import lower_domain

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HINT = 6
_MAC = 10


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"


class Signer:
    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("secret_key must be at least 16 characters")
        self._key = secret_key.encode("utf-8")

    def hint(self, email: str) -> bytes:
        """The keyed address hint carried in tokens for ``email`` (any spelling of it)."""
        return self._hint(_key(email))

    def old_hint(self, email: str) -> bytes:
        """The hint an old-form token for ``email`` carries, for looking it up; ``b""`` when
        it is :meth:`hint` (an all-lowercase address: the new lookup finds it already)."""
        old = _old(email)
        return b"" if old == _key(email) else self._hint(old)

    def _hint(self, form: bytes) -> bytes:
        return hmac.new(self._key, b"hint\0" + form, hashlib.sha256).digest()[:_HINT]

    def make(self, purpose: Purpose, email: str, now: datetime) -> str:
        day = _day(now)
        form = _key(email)
        token = day.to_bytes(2, "big") + self._hint(form) + self._mac(purpose, form, day)
        return base64.b32encode(token).decode("ascii").rstrip("=").lower()

    def verify(
        self,
        purpose: Purpose,
        token: str,
        candidates: Iterable[str],
        now: datetime,
        max_age_days: int | None = None,
    ) -> str:
        """Return the one address among ``candidates`` that ``token`` was made for, in either
        form (any spelling of its mailbox for a new one, the very address for an old one).

        ``candidates`` may be every known address; only those whose hint matches are checked.
        """
        raw = _decode(token)
        day = int.from_bytes(raw[:2], "big")
        hint, mac = raw[2 : 2 + _HINT], raw[2 + _HINT :]
        for email in candidates:
            for form in (_key(email), _old(email)):
                if hmac.compare_digest(self._hint(form), hint) and hmac.compare_digest(
                    self._mac(purpose, form, day), mac
                ):
                    if max_age_days is not None and _day(now) - day > max_age_days:
                        raise TokenExpired("this link has expired; please ask again")
                    return email
        raise TokenError("this link is not valid (it may have been altered)")

    def matches(
        self,
        purpose: Purpose,
        token: str,
        email: str,
        now: datetime,
        max_age_days: int | None = None,
    ) -> bool:
        """True when ``token`` was made for exactly ``email`` (and has not expired)."""
        try:
            self.verify(purpose, token, [email], now, max_age_days)
        except TokenError:
            return False
        return True

    def _mac(self, purpose: Purpose, form: bytes, day: int) -> bytes:
        message = b"\0".join([purpose.value.encode(), form, str(day).encode()])
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC]


def token_hint(token: str) -> bytes | None:
    """The address hint inside ``token`` (``None`` when it is no token): the holder looks up
    the addresses whose :meth:`Signer.hint` it is, then :meth:`Signer.verify` checks them."""
    try:
        raw = _decode(token)
    except TokenError:
        return None
    return raw[2 : 2 + _HINT]


def _key(email: str) -> bytes:
    """What a token binds: the mailbox key."""
    return mailbox_key(email.strip()).encode()


def _old(email: str) -> bytes:
    """What an old-form token bound: the address with its domain lowercased."""
    return lower_domain(email).encode()


def _day(now: datetime) -> int:
    return (now - _EPOCH).days


def _decode(token: str) -> bytes:
    cleaned = token.strip().upper()
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise TokenError("this link is not valid (it may have been altered)") from None
    if len(raw) != 2 + _HINT + _MAC:
        raise TokenError("this link is not valid (it may have been altered)")
    return raw
