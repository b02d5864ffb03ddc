"""Tokens name a mailbox: any spelling of the address verifies, and tokens mailed before (the
old form, bound to the address with only its domain lowercased) keep working."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
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
            "C•••@example.org unsubscribed; goodbye queued"
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
