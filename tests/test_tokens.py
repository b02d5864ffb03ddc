"""Tokens name a mailbox: any spelling of the address verifies, and tokens mailed before (the
old form, bound to the address with only its domain lowercased) keep working."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.errors import TokenError
from crusader_mail.models import Source, Status
from crusader_mail.storage.files import FilesStore
from crusader_mail.subscriptions.service import SubscriptionService
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.inbox import SECRET, make_settings

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def old_token(secret: str, purpose: Purpose, email: str, now: datetime) -> str:
    """A token as crusader-mail made them before tokens named the mailbox (the oracle)."""
    key = secret.encode()
    local, _, domain = email.strip().rpartition("@")
    form = f"{local}@{domain.lower()}".encode()
    day = (now - datetime(1970, 1, 1, tzinfo=UTC)).days
    hint = hmac.new(key, b"hint\0" + form, hashlib.sha256).digest()[:6]
    message = b"\0".join([purpose.value.encode(), form, str(day).encode()])
    mac = hmac.new(key, message, hashlib.sha256).digest()[:10]
    raw = day.to_bytes(2, "big") + hint + mac
    return base64.b32encode(raw).decode().rstrip("=").lower()


def test_a_token_verifies_for_every_spelling_of_its_mailbox() -> None:
    signer = Signer(SECRET)
    token = signer.make(Purpose.UNSUBSCRIBE, "Carol@Example.org", NOW)
    assert token == signer.make(Purpose.UNSUBSCRIBE, "carol@example.org", NOW)
    assert signer.hint("CAROL@example.org") == signer.hint("carol@EXAMPLE.org")
    for stored in ("Carol@example.org", "carol@example.org", "CAROL@example.org"):
        assert signer.verify(Purpose.UNSUBSCRIBE, token, [stored], NOW) == stored
    with pytest.raises(TokenError):
        signer.verify(Purpose.UNSUBSCRIBE, token, ["carol2@example.org"], NOW)


def test_old_tokens_still_verify_and_are_found_by_their_old_hint() -> None:
    signer = Signer(SECRET)
    old = old_token(SECRET, Purpose.UNSUBSCRIBE, "Carol@Example.org", NOW)
    assert signer.verify(Purpose.UNSUBSCRIBE, old, ["Carol@example.org"], NOW) == (
        "Carol@example.org"
    )
    with pytest.raises(TokenError):  # the old form bound the local part as it was spelled
        signer.verify(Purpose.UNSUBSCRIBE, old, ["carol@example.org"], NOW)
    assert signer.old_hint("Carol@example.org") != signer.hint("Carol@example.org")
    # an all-lowercase address had the same token in both forms: nothing to look up twice
    assert signer.old_hint("dan@example.org") == b""
    assert old_token(SECRET, Purpose.CONFIRM, "dan@Example.ORG", NOW) == signer.make(
        Purpose.CONFIRM, "dan@example.org", NOW
    )


def test_the_service_finds_the_reader_of_an_old_token(
    clean_env: Path, tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path)
    store = FilesStore(settings.state_dir, settings.subscribers_dir, clock, lambda: SECRET)
    with store.roster.edit() as changes:
        changes.add("Carol@example.org", via=Source.CLI)
        changes.add("dan@example.org", via=Source.CLI)
    service = SubscriptionService(settings, clock, store, Signer(SECRET))
    old = old_token(SECRET, Purpose.UNSUBSCRIBE, "Carol@example.org", clock.now())
    new = Signer(SECRET).make(Purpose.UNSUBSCRIBE, "CAROL@EXAMPLE.ORG", clock.now())
    assert service.find(Purpose.UNSUBSCRIBE, old) == "Carol@example.org"
    assert service.find(Purpose.UNSUBSCRIBE, new) == "Carol@example.org"
    with service.session() as session:
        assert session.unsubscribe_token(old, "web:1", Source.WEB) == (
            "C•••@example.org unsubscribed; no goodbye mail (the page is the goodbye)"
        )
    reader = store.roster.get("carol@example.org")
    assert reader is not None
    assert reader.status is Status.UNSUBSCRIBED
    with pytest.raises(TokenError):
        service.find(
            Purpose.UNSUBSCRIBE,
            old_token(
                "another-secret-0123456789", Purpose.UNSUBSCRIBE, "Carol@example.org", clock.now()
            ),
        )


def test_a_token_bound_to_a_state_is_void_in_any_other() -> None:
    signer = Signer(SECRET)
    token = signer.make(Purpose.CONFIRM, "jo@example.org", NOW, "pending@2026-11-23T00:00:00Z")
    assert signer.matches(
        Purpose.CONFIRM, token, "JO@example.org", NOW, 7, state="pending@2026-11-23T00:00:00Z"
    )
    for other in ("", "active@2026-11-23T00:05:00Z", "unsubscribed@2026-11-23T00:00:00Z"):
        assert not signer.matches(Purpose.CONFIRM, token, "jo@example.org", NOW, 7, state=other)
    # an unsubscribe token is bound to no state: every issue's link keeps working
    leave = signer.make(Purpose.UNSUBSCRIBE, "jo@example.org", NOW)
    assert signer.matches(Purpose.UNSUBSCRIBE, leave, "jo@example.org", NOW)


def test_a_mail_id_proves_the_one_mailbox_it_was_made_for() -> None:
    signer = Signer(SECRET)
    value = signer.mail_id("Carol@Example.org", "2026-11-23-1a2b3c4d")
    assert re.fullmatch(r"2026-11-23-1a2b3c4d\.[a-z2-7]{26}", value)
    looked_up: list[bytes] = []

    def candidates(hint: bytes) -> list[str]:
        looked_up.append(hint)
        return ["bob@example.org", "carol@example.org"]

    assert signer.mail_id_reader(value.upper(), candidates) == "carol@example.org"
    assert looked_up == [signer.hint("carol@example.org")]
    ref, _, code = value.partition(".")
    assert signer.mail_id_reader(f"2026-11-30-1a2b3c4d.{code}", candidates) is None  # other ref
    assert signer.mail_id_reader(f"{ref}.{'a' * 26}", candidates) is None  # made up
    assert signer.mail_id_reader("not a mail id", candidates) is None
    assert Signer("another-secret-0123456789").mail_id_reader(value, candidates) is None
    with pytest.raises(ValueError, match="not a mail id ref"):
        signer.mail_id("carol@example.org", "no spaces allowed")


def test_a_preferences_token_comes_from_the_unsubscribe_tokens_keyed_hash() -> None:
    signer = Signer(SECRET)
    codes = signer.send_codes(NOW, "2026-11-23-1a2b3c4d")
    leave, choose, mail_id = codes("Carol@Example.org")
    assert leave == signer.make(Purpose.UNSUBSCRIBE, "carol@example.org", NOW)
    assert choose == signer.make(Purpose.PREFERENCES, "CAROL@example.org", NOW)
    assert mail_id == signer.mail_id("carol@example.org", "2026-11-23-1a2b3c4d")
    # the oracle: one HMAC gives the hint, the unsubscribe MAC and then the preferences MAC
    hashed = hmac.new(SECRET.encode(), b"hint\0carol@example.org", hashlib.sha256).digest()
    day = (NOW - datetime(1970, 1, 1, tzinfo=UTC)).days.to_bytes(2, "big")
    raw = base64.b32decode(choose.upper() + "===")
    assert raw == day + hashed[:6] + hashed[16:26]
    assert signer.verify(Purpose.PREFERENCES, choose, ["carol@example.org"], NOW) == (
        "carol@example.org"
    )
    # each token opens its own door only, and only for its own mailbox
    assert not signer.matches(Purpose.UNSUBSCRIBE, choose, "carol@example.org", NOW)
    assert not signer.matches(Purpose.PREFERENCES, leave, "carol@example.org", NOW)
    assert not signer.matches(Purpose.PREFERENCES, choose, "dan@example.org", NOW)
    assert not Signer("another-secret-0123456789").matches(
        Purpose.PREFERENCES, choose, "carol@example.org", NOW
    )
    # a preferences token of the two-HMAC form (the pages made them before) still verifies
    older = old_token(SECRET, Purpose.PREFERENCES, "carol@example.org", NOW)
    assert older != choose
    assert signer.matches(Purpose.PREFERENCES, older, "carol@example.org", NOW)


def test_a_sends_codes_are_the_tokens_and_mail_id_made_one_by_one() -> None:
    """The send makes a reader's three codes at once (one base32 pass): the same characters as
    :meth:`Signer.make` and :meth:`Signer.mail_id` make each alone, over many secrets, days,
    refs and spellings."""
    chooser = random.Random(15)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+_-é"
    for _ in range(300):
        signer = Signer("".join(chooser.choices(letters, k=chooser.randint(24, 80))))
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=chooser.randrange(65536))
        ref = f"2026-11-{chooser.randint(10, 30)}-{chooser.getrandbits(32):08x}"
        codes = signer.send_codes(when, ref)
        for _ in range(5):
            local = "".join(chooser.choices(letters, k=chooser.randint(1, 40)))
            email = f"{local}@Example{chooser.randint(0, 9)}.org"
            leave, choose, mail_id = codes(f" {email} " if chooser.random() < 0.2 else email)
            assert leave == signer.make(Purpose.UNSUBSCRIBE, email, when)
            assert choose == signer.make(Purpose.PREFERENCES, email, when)
            assert mail_id == signer.mail_id(email, ref)
