"""Shared set-up for the inbox, mail and server tests (no tests here)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from crusader_mail.clock import Clock
from crusader_mail.delivery.mailer import Mailer, RecordingMailer
from crusader_mail.inbox.process import InboxContext, InboxReport, process_messages
from crusader_mail.inbox.sources import RawMessage, read_paths
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.subscriptions.outbox import send_queued
from crusader_mail.util.tokens import MAIL_ID_HEADER, Signer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "mail"
SECRET = "test-secret-key-0123456789abcdef"
TRUSTED = "mx.bizcrusader.example"
ISSUE = "2026-11-23-1a2b3c4d"
OUR_FROM = b"From: Biz Crusader <news@bizcrusader.example>\n"


def make_settings(tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "subscribers_dir": tmp_path / "subscribers",
        "templates_dir": REPO / "templates",
        "outbox_dir": tmp_path / "outbox",
        "secret_key": SECRET,
        "newsletter": {
            "name": "Biz Crusader",
            "site_url": "https://bizcrusader.example",
            "from_email": "news@bizcrusader.example",
            "from_name": "Biz Crusader",
            "unsubscribe_url": "https://mail.bizcrusader.example/unsubscribe",
            "confirm_url": "https://mail.bizcrusader.example/confirm",
        },
        "server": {"trusted_authserv_id": TRUSTED},
    }
    values.update(extra)
    return Settings(**values)


def write_config(folder: Path, api_url: str, extra: str = "") -> Path:
    """A config file for the real command: the repository's templates, state under ``folder``,
    SendGrid at ``api_url``, and ``extra`` TOML sections appended."""
    config = folder / "crusader-mail.toml"
    config.write_text(
        f"""
state_dir = "state"
subscribers_dir = "subscribers"
templates_dir = "{REPO / "templates"}"
[newsletter]
name = "Biz Crusader"
from_email = "news@bizcrusader.example"
[sendgrid]
api_url = "{api_url}"
"""
        + extra
    )
    return config


@dataclass
class Inbox(InboxContext):
    """An inbox context, and the mailer its queued replies are sent through by :func:`run`."""

    mailer: Mailer = field(default_factory=RecordingMailer)


def make_ctx(settings: Settings, clock: Clock, mailer: Mailer | None = None) -> Inbox:
    made = InboxContext.create(settings, clock, open_store(settings, clock))
    return Inbox(made.settings, clock, made.store, made.signer, mailer=mailer or RecordingMailer())


def fixture(name: str) -> RawMessage:
    return next(read_paths([FIXTURES / name]))


def mail(
    *,
    sender: str = "Jane <jane@reader.example>",
    to: str = "news@bizcrusader.example",
    subject: str = "",
    body: str = "",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> RawMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    if message_id is not None:
        message["Message-ID"] = message_id
    for key, value in (headers or {}).items():
        message[key] = value
    message.set_content(body or "\n")
    return RawMessage(message.as_bytes(), origin="test")


def run(inbox: Inbox, messages: Iterable[RawMessage]) -> InboxReport:
    """Process the messages, then send the replies they queued (as ``inbox process`` does)."""
    report = process_messages(list(messages), inbox)
    report.replies = send_queued(inbox.store, inbox.mailer, inbox.clock)
    return report


def proof(email: str, ref: str = ISSUE) -> str:
    """The ``X-Crusader-Mail-Id`` value our mail to ``email`` carries (issue ``ref``)."""
    return Signer(SECRET).mail_id(email, ref)


def returning(name: str, *readers: str, ref: str = ISSUE) -> RawMessage:
    """The fixture bounce or complaint ``name`` as it comes back for mail we really sent: the
    copy of our message it returns carries our proof header for each of ``readers`` (and the
    report gets a Message-ID of its own, so it is not the fixture handled twice)."""
    data = (FIXTURES / name).read_bytes()
    assert OUR_FROM in data, f"{name} returns no copy of our message"
    proofs = "".join(f"{MAIL_ID_HEADER}: {proof(reader, ref)}\n" for reader in readers)
    data = data.replace(OUR_FROM, OUR_FROM + proofs.encode(), 1)
    data = re.sub(rb"(?im)^(message-id:\s*<)", rb"\1proven-", data, count=1)
    return RawMessage(data, origin=f"{name} (returning our proof)")
