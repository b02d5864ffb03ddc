"""Signed, compact, address-bound tokens for unsubscribe, confirmation and preferences.

A token is short enough for the local part of a plus-address (``news+unsubscribe-<token>@...``,
local parts are at most 64 octets) and case-insensitive, because some mail servers lowercase
local parts. It is ``base32(day ‖ address-hint ‖ mac)``, 29 characters:

- ``day`` (2 bytes): days since 1970-01-01 when it was issued, for expiry;
- ``hint`` (6 bytes): the first bytes of ``HMAC-SHA256(secret_key, "hint" ‖ mailbox key)``, so
  the holder can find the address among the subscribers without the token revealing it;
- ``mac`` (10 bytes): an unsubscribe token's is the NEXT 10 bytes of that same keyed hash, a
  preferences token's the 10 after those (one keyed hash for both; they never expire, so their
  day is not covered; neither token tells the other's MAC); a confirmation token's is
  ``HMAC-SHA256(secret_key, purpose ‖ mailbox key ‖ day ‖ state)``, so its day and state are.

Unsubscribe tokens mailed before used the confirmation's kind of MAC (the *two-HMAC form*):
:meth:`Signer.verify` accepts it for ever, as unsubscribe links never expire.

The mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`, the address lowercased)
makes a token good for every spelling of its mailbox. Tokens mailed before that hashed the
address with only its domain lowercased (the *old address form*; the same bytes for an
all-lowercase address): :meth:`Signer.verify` accepts both forms, :meth:`Signer.make` makes only
the new one, and :meth:`Signer.old_hint` lets the holder look an old token's address up.

A token is bound to one purpose and one mailbox: a forged token, one made for another address
or another purpose, or an expired one, raises :class:`~crusader_mail.errors.TokenError`. A
token may also be bound to a ``state`` (a confirmation token to the reader's status and last
change, :func:`crusader_mail.subscriptions.service.reader_state`): the MAC covers it, so the
token is void once that state changes, and spent by its own use.

The *mail id* (:meth:`Signer.mail_id`, header :data:`MAIL_ID_HEADER`) is the proof every message
we send carries for its one recipient: ``<ref>.<code>``, ``ref`` the issue id or the reply's
kind, ``code`` = ``base32(hint ‖ mac)`` (26 characters), the MAC over the mailbox key and
``ref``. A bounce or complaint that returns it proves it answers mail we sent to that reader
(:meth:`Signer.mail_id_reader`); it proves nothing about any other address.

A send makes the unsubscribe and preferences tokens and the mail id of every reader
(:meth:`Signer.send_codes`): two keyed hashes per reader, from keyed states made once, the hint
shared, the three codes base32-encoded by a few operations on one integer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum

from crusader_mail.errors import TokenError, TokenExpired
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.addresses import lower_domain

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HINT = 6
_MAC = 10
_ONE_HASH = {"unsubscribe": _HINT, "preferences": _HINT + _MAC}
"""Where the MAC of a token of the one-hash form starts in the hinted hash, by purpose."""
MAIL_ID_HEADER = "X-Crusader-Mail-Id"
_REF = r"[a-z0-9][a-z0-9-]{0,63}"
MAIL_ID = re.compile(rf"({_REF})\.([a-z2-7]{{26}})", re.IGNORECASE)
"""A mail id: the ``ref``, a dot, the 26-character code."""
_BLOCK = 64  # SHA-256's block size, the HMAC key's padded length
_INVALID = "this link is not valid (it may have been altered)"


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"
    PREFERENCES = "preferences"  # the preferences page: never expires, as unsubscribe links


class Signer:
    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("secret_key must be at least 16 characters")
        self._key = secret_key.encode("utf-8")
        self._hinted = _Hmac(self._key, b"hint\0")
        self._mailed = _Hmac(self._key, b"mail-id\0")

    def hint(self, email: str) -> bytes:
        """The keyed address hint carried in tokens for ``email`` (any spelling of it)."""
        return self._hinted_hash(_key(email))[:_HINT]

    def old_hint(self, email: str) -> bytes:
        """The hint an old-form token for ``email`` carries, for looking it up; ``b""`` when
        it is :meth:`hint` (an all-lowercase address: the new lookup finds it already)."""
        old = _old(email)
        return b"" if old == _key(email) else self._hinted_hash(old)[:_HINT]

    def _hinted_hash(self, form: bytes) -> bytes:
        """``HMAC-SHA256(key, "hint" ‖ form)``: the hint, then an unsubscribe token's MAC, then
        a preferences token's."""
        return self._hinted.digest(form)

    def make(self, purpose: Purpose, email: str, now: datetime, state: str = "") -> str:
        """A token for ``email`` issued ``now``; with ``state``, valid only while the holder
        finds the reader in that state (see the module docstring)."""
        day = _day(now)
        form = _key(email)
        hashed = self._hinted_hash(form)
        start = _ONE_HASH.get(purpose.value)
        if start is not None and not state:
            return _token(day.to_bytes(2, "big") + hashed[:_HINT] + hashed[start : start + _MAC])
        return _token(
            day.to_bytes(2, "big") + hashed[:_HINT] + self._mac(purpose, form, day, state)
        )

    def verify(
        self,
        purpose: Purpose,
        token: str,
        candidates: Iterable[str],
        now: datetime,
        max_age_days: int | None = None,
        state_of: Callable[[str], str] | None = None,
    ) -> str:
        """Return the one address among ``candidates`` that ``token`` was made for, in any
        form (any spelling of its mailbox for a new one, the very address for an old address
        form; an unsubscribe or preferences token of the two-HMAC form too); with ``state_of``,
        made for that
        address in the state ``state_of(address)`` gives.

        ``candidates`` may be every known address; only those whose hint matches are checked.
        """
        raw = _decode(token)
        day = int.from_bytes(raw[:2], "big")
        hint, mac = raw[2 : 2 + _HINT], raw[2 + _HINT :]
        for email in candidates:
            for form in (_key(email), _old(email)):
                hashed = self._hinted_hash(form)
                if not hmac.compare_digest(hashed[:_HINT], hint):
                    continue
                state = state_of(email) if state_of is not None else ""
                start = _ONE_HASH.get(purpose.value) if form == _key(email) and not state else None
                if (
                    start is not None and hmac.compare_digest(hashed[start : start + _MAC], mac)
                ) or (hmac.compare_digest(self._mac(purpose, form, day, state), mac)):
                    if max_age_days is not None and _day(now) - day > max_age_days:
                        raise TokenExpired("this link has expired; please ask again")
                    return email
        raise TokenError(_INVALID)

    def matches(
        self,
        purpose: Purpose,
        token: str,
        email: str,
        now: datetime,
        max_age_days: int | None = None,
        state: str = "",
    ) -> bool:
        """True when ``token`` was made for exactly ``email`` (in ``state``, and has not
        expired)."""
        try:
            self.verify(purpose, token, [email], now, max_age_days, lambda _email: state)
        except TokenError:
            return False
        return True

    def _mac(self, purpose: Purpose, form: bytes, day: int, state: str = "") -> bytes:
        """The MAC of a confirmation token, and of a token of the two-HMAC form."""
        parts = [purpose.value.encode(), form, str(day).encode()]
        if state:
            parts.append(state.encode())
        return hmac.new(self._key, b"\0".join(parts), hashlib.sha256).digest()[:_MAC]

    # -- mail ids: the proof a message we sent carries -------------------------------------------

    def mail_id(self, email: str, ref: str) -> str:
        """The :data:`MAIL_ID_HEADER` value of a message to ``email``; ``ref`` (the issue id or
        the reply kind) must match :data:`MAIL_ID`'s first part."""
        ref = _checked_ref(ref)
        form = _key(email)
        return _mail_id(ref, self._hinted_hash(form)[:_HINT], self._mail_mac(form, ref))

    def send_codes(self, now: datetime, ref: str) -> Callable[[str], tuple[str, str, str]]:
        """For a send: ``codes(email)`` is ``(make(UNSUBSCRIBE, email, now),
        make(PREFERENCES, email, now), mail_id(email, ref))``: the two tokens from one keyed
        hash, the mail id from a second, the three encoded at once (:data:`_SPREAD`)."""
        ref = _checked_ref(ref)
        day = _day(now) << 128
        tail = b"\0" + ref.encode()
        head = ref + "."
        hinted, mailed = self._hinted.digest, self._mailed.digest
        (l1, h1, s1), (l2, h2, s2), (l3, h3, s3), (l4, h4, s4), (l5, h5, s5) = _SPREAD
        letters = _LETTERS

        def codes(email: str) -> tuple[str, str, str]:
            form = mailbox_key(email.strip()).encode()
            n = int.from_bytes(hinted(form)[:26], "big")  # hint, unsubscribe MAC, preferences MAC
            hint = n >> 160
            mac = int.from_bytes(mailed(form + tail)[:_MAC], "big")
            # three 160-bit blocks 256 bits apart: day+hint+MAC (+1 zero bit) of each token,
            # hint+MAC (+2) of the mail id, each padded with zero bits to 32 groups of 5 bits
            x = (
                ((day | (n >> 80)) << 528)
                | ((day | (hint << 80) | (n & _LOW80)) << 272)
                | (((hint << 80) | mac) << 32)
            )
            x = (x & l1) | ((x & h1) << s1)
            x = (x & l2) | ((x & h2) << s2)
            x = (x & l3) | ((x & h3) << s3)
            x = (x & l4) | ((x & h4) << s4)
            x = (x & l5) | ((x & h5) << s5)
            text = x.to_bytes(96, "big").translate(letters).decode("ascii")
            return text[:29], text[32:61], head + text[64:90]

        return codes

    def mail_id_reader(
        self, value: str, candidates: Callable[[bytes], Iterable[str]]
    ) -> str | None:
        """The address a mail id was made for, among ``candidates(hint)`` (the stored
        addresses with that :meth:`hint`); ``None`` for a forged or unknown one."""
        parsed = _parse_mail_id(value)
        if parsed is None:
            return None
        ref, hint, mac = parsed
        for email in candidates(hint):
            form = _key(email)
            if hmac.compare_digest(self.hint(email), hint) and hmac.compare_digest(
                self._mail_mac(form, ref), mac
            ):
                return email
        return None

    def _mail_mac(self, form: bytes, ref: str) -> bytes:
        return self._mailed.digest(form + b"\0" + ref.encode())[:_MAC]


class _Hmac:
    """HMAC-SHA256 (RFC 2104) of messages that begin with ``prefix``: the padded key and the
    prefix are hashed once, then ``digest(rest)`` is ``hmac.new(key, prefix + rest, sha256)``'s
    digest for two copies of a hash state (the hot loop of a send makes two per reader)."""

    def __init__(self, key: bytes, prefix: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded) + prefix)
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))

    def digest(self, rest: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(rest)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _checked_ref(ref: str) -> str:
    ref = ref.lower()
    if not re.fullmatch(_REF, ref):
        raise ValueError(f"not a mail id ref: {ref!r}")
    return ref


def _parse_mail_id(value: str) -> tuple[str, bytes, bytes] | None:
    """The ref, hint and MAC of a mail id, ``None`` when it is none."""
    match = MAIL_ID.fullmatch(value.strip())
    if match is None:
        return None
    code = match.group(2).upper()
    raw = base64.b32decode(code + "=" * (-len(code) % 8))
    return match.group(1).lower(), raw[:_HINT], raw[_HINT:]


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = [first + second for first in _BASE32 for second in _BASE32]  # 10 bits -> 2 characters


_LETTERS = bytes.maketrans(bytes(range(32)), _BASE32.encode())
"""Each byte 0-31 as its base32 letter."""
_LOW80 = (1 << 80) - 1


def _spreading(groups: int, blocks: int) -> tuple[tuple[int, int, int], ...]:
    """The steps that give each 5-bit group of ``blocks`` blocks of ``groups`` (a power of
    two) groups, the blocks ``8 * groups`` bits apart, a byte of its own: each step moves the
    upper half of every block up (``x & low | (x & high) << shift``) into a lane of its own."""
    steps = []
    while groups > 1:
        half = groups // 2
        low = sum(((1 << 5 * half) - 1) << 8 * groups * lane for lane in range(blocks))
        steps.append((low, low << 5 * half, 3 * half))
        groups, blocks = half, blocks * 2
    return tuple(steps)


_SPREAD = _spreading(32, 3)
"""How :meth:`Signer.send_codes` turns three 160-bit blocks into 96 bytes of 0-31 (one
``bytes.translate`` then makes them base32 letters)."""


def _token(raw: bytes) -> str:
    """``base32(raw)`` of an 18-byte token: 29 characters, lowercase, unpadded (the last one
    holds 4 bits and a zero)."""
    n = int.from_bytes(raw, "big") << 1
    pairs = _PAIRS
    return (
        f"{_BASE32[n >> 140]}{pairs[(n >> 130) & 1023]}{pairs[(n >> 120) & 1023]}"
        f"{pairs[(n >> 110) & 1023]}{pairs[(n >> 100) & 1023]}{pairs[(n >> 90) & 1023]}"
        f"{pairs[(n >> 80) & 1023]}{pairs[(n >> 70) & 1023]}{pairs[(n >> 60) & 1023]}"
        f"{pairs[(n >> 50) & 1023]}{pairs[(n >> 40) & 1023]}{pairs[(n >> 30) & 1023]}"
        f"{pairs[(n >> 20) & 1023]}{pairs[(n >> 10) & 1023]}{pairs[n & 1023]}"
    )


def _mail_id(ref: str, hint: bytes, mac: bytes) -> str:
    """``ref.base32(hint ‖ mac)``: 16 bytes, 26 characters, lowercase, unpadded."""
    n = int.from_bytes(hint + mac, "big") << 2
    pairs = _PAIRS
    return (
        f"{ref}.{pairs[n >> 120]}{pairs[(n >> 110) & 1023]}{pairs[(n >> 100) & 1023]}"
        f"{pairs[(n >> 90) & 1023]}{pairs[(n >> 80) & 1023]}{pairs[(n >> 70) & 1023]}"
        f"{pairs[(n >> 60) & 1023]}{pairs[(n >> 50) & 1023]}{pairs[(n >> 40) & 1023]}"
        f"{pairs[(n >> 30) & 1023]}{pairs[(n >> 20) & 1023]}{pairs[(n >> 10) & 1023]}"
        f"{pairs[n & 1023]}"
    )


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
        raise TokenError(_INVALID) from None
    if len(raw) != 2 + _HINT + _MAC:
        raise TokenError(_INVALID)
    return raw
