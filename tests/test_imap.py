"""The inbox against a real IMAP server: dovecot on 127.0.0.1 with TLS (peers/dovecot.py)."""

from __future__ import annotations

import imaplib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import dovecot
from peers.sendgrid_server import SendGridServer, sendgrid_server

from crusader_mail.clock import FixedClock
from crusader_mail.errors import InboxError
from crusader_mail.inbox.process import process_messages
from crusader_mail.inbox.sources import ImapSource
from crusader_mail.models import Source, Status
from crusader_mail.settings import Settings
from tests.support.inbox import FIXTURES, SECRET, make_ctx, make_settings, returning, write_config

__all__ = ["sendgrid_server"]

pytestmark = [
    pytest.mark.imap,
    # Skipped on a developer's machine without dovecot; under CI a missing server is a failure.
    pytest.mark.skipif(
        not dovecot.available() and not os.environ.get("CI"),
        reason="dovecot is not installed (make services)",
    ),
]

MESSAGES = [
    "subscribe-by-address.eml",
    "unsubscribe-authenticated.eml",
    "dsn-hard.eml",  # as it comes back for the issue we sent Jane: with our proof in it
    "out-of-office.eml",
    "other.eml",
]


def message_data(name: str) -> bytes:
    if name == "dsn-hard.eml":
        return returning(name, "jane@reader.example").data
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def imap_server() -> Iterator[dovecot.Dovecot]:
    server = dovecot.start_dovecot()
    try:
        with imaplib.IMAP4_SSL(
            server.host, server.port, ssl_context=server.ssl_context(), timeout=10
        ) as client:
            client.login(server.user, server.password)
            for name in MESSAGES:
                status, _ = client.append("INBOX", None, None, message_data(name))
                assert status == "OK"
            client.logout()
        yield server
    finally:
        server.stop()


def imap_settings(tmp_path: Path, server: dovecot.Dovecot, **extra: Any) -> Settings:
    imap = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "ca_file": server.ca_file,
        **extra.pop("imap", {}),
    }
    return make_settings(tmp_path, imap=imap, **extra)


def folder_flags(server: dovecot.Dovecot, folder: str) -> list[bytes]:
    with imaplib.IMAP4_SSL(server.host, server.port, ssl_context=server.ssl_context()) as client:
        client.login(server.user, server.password)
        client.select(f'"{folder}"', readonly=True)
        _, data = client.uid("FETCH", "1:*", "(FLAGS)")
        client.logout()
    return [d for d in data if isinstance(d, bytes)]


def test_imap_messages_are_handled_once_and_flagged(
    imap_server: dovecot.Dovecot, clean_env: Path, tmp_path: Path, clock: FixedClock
) -> None:
    settings = imap_settings(tmp_path, imap_server)
    ctx = make_ctx(settings, clock)
    with ctx.store.roster.edit() as roster:
        roster.add("carol@reader.example", via=Source.CLI)
        roster.add("jane@reader.example", status=Status.ACTIVE, via=Source.CLI)
    with ImapSource(settings.imap) as source:
        report = process_messages(source.messages(), ctx)
        assert source.mark_handled() == len(MESSAGES)
    commands = [a.command for a in report.actions]
    assert commands == ["subscribe", "unsubscribe", "bounce", "auto-reply", "none"]
    assert all(a.origin.startswith("imap:INBOX/") for a in report.actions)
    carol = ctx.store.roster.get("carol@reader.example")
    jane = ctx.store.roster.get("jane@reader.example")
    assert carol is not None
    assert jane is not None
    assert carol.status is Status.UNSUBSCRIBED
    assert jane.status is Status.BOUNCED
    flags = folder_flags(imap_server, "INBOX")
    assert len(flags) == len(MESSAGES)
    assert all(b"\\Seen" in f and b"CrusaderMailHandled" in f for f in flags)
    with ImapSource(settings.imap) as source:  # a second run finds nothing new
        assert list(source.messages()) == []


def test_imap_messages_moved_to_the_processed_folder(
    imap_server: dovecot.Dovecot, clean_env: Path, tmp_path: Path, clock: FixedClock
) -> None:
    settings = imap_settings(tmp_path, imap_server, imap={"processed_folder": "Processed"})
    ctx = make_ctx(settings, clock)
    with ImapSource(settings.imap) as source:
        report = process_messages(source.messages(), ctx)
        source.mark_handled()
    assert report.processed == len(MESSAGES)
    assert folder_flags(imap_server, "INBOX") == []
    assert len(folder_flags(imap_server, "Processed")) == len(MESSAGES)


def test_imap_errors_are_one_line(
    imap_server: dovecot.Dovecot, clean_env: Path, tmp_path: Path
) -> None:
    wrong = imap_settings(tmp_path, imap_server, imap={"password": "wrong"})
    with (
        pytest.raises(InboxError, match=r"^imap 127\.0\.0\.1:\d+/INBOX: ") as caught,
        ImapSource(wrong.imap),
    ):
        pass
    assert "\n" not in str(caught.value)
    untrusted = imap_settings(tmp_path, imap_server, imap={"ca_file": None})
    with pytest.raises(InboxError, match="CERTIFICATE_VERIFY_FAILED"), ImapSource(untrusted.imap):
        pass


def test_cli_inbox_process_imap_json(
    imap_server: dovecot.Dovecot,
    sendgrid_server: SendGridServer,
    clean_env: Path,
    tmp_path: Path,
) -> None:
    """The real command in a subprocess: IMAP in, replies out through the SendGrid look-alike."""
    imap = f"""
[imap]
host = "{imap_server.host}"
port = {imap_server.port}
user = "{imap_server.user}"
ca_file = "{imap_server.ca_file}"
[server]
trusted_authserv_id = "mx.bizcrusader.example"
"""
    config = write_config(tmp_path, sendgrid_server.url, imap)
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("CRUSADER_MAIL_", "SENDGRID_"))
        },
        "CRUSADER_MAIL_SECRET_KEY": SECRET,
        "CRUSADER_MAIL_IMAP__PASSWORD": imap_server.password,
        "SENDGRID_API_KEY": sendgrid_server.api_key,
    }
    command = [str(Path(sys.executable).parent / "crusader-mail"), "--config", str(config)]
    done = subprocess.run(
        [*command, "inbox", "process", "--imap", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["processed"] == len(MESSAGES)
    assert [a["command"] for a in report["actions"]] == [
        "subscribe",
        "unsubscribe",
        "bounce",
        "auto-reply",
        "none",
    ]
    assert "jane@reader.example" not in done.stdout
    [confirmation] = sendgrid_server.to("jane@reader.example")
    assert confirmation.subject == "Please confirm your subscription to Biz Crusader"
    again = subprocess.run(
        [*command, "inbox", "process", "--imap", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert json.loads(again.stdout) == {
        "processed": 0,
        "actions": [],
        "replies": {"sent": 0, "failed": 0, "waiting": 0},
    }
