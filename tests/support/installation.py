"""An installation driven by the real commands (``inbox process``, ``run``, ``subscribers``),
with its own clock and mail folder, mail through the SendGrid peer: :class:`Mail`, and the
``box`` fixture that makes one (import it into a test module; no tests here)."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from peers.sendgrid_server import Delivery, SendGridServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.models import Source, Status
from crusader_mail.settings import Settings, load_settings
from crusader_mail.storage import open_store
from crusader_mail.storage.contract import Store
from tests.support.inbox import SECRET, TRUSTED, write_config


class Mail:
    """The installation under test: its config, clock and mail folder; each call runs the
    real command (a new process context, as from a shell)."""

    def __init__(self, folder: Path, clock: FixedClock, sendgrid: SendGridServer) -> None:
        self.folder = folder
        self.clock = clock
        self.sendgrid = sendgrid
        self.config = write_config(
            folder,
            sendgrid.url,
            # within [sendgrid]: SendGrid's one click is the way out (a real run needs one)
            f'subscription_tracking = true\n[server]\ntrusted_authserv_id = "{TRUSTED}"\n',
        )
        self.inbox = folder / "mail"
        self.inbox.mkdir()
        self.count = 0

    def command(self, *args: str) -> str:
        app = AppContext(config=self.config, clock=self.clock)
        result = CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    def process(self, *paths: Path) -> dict[str, Any]:
        """``inbox process --json`` over ``paths`` (default: the messages written since)."""
        found = list(paths) or [self.inbox]
        report: dict[str, Any] = json.loads(
            self.command("inbox", "process", "--json", *map(str, found))
        )
        for old in self.inbox.iterdir():
            old.unlink()
        return report

    def write(self, data: bytes) -> Path:
        self.count += 1
        path = self.inbox / f"{self.count:04d}.eml"
        path.write_bytes(data)
        return path

    def letter(
        self,
        sender: str,
        subject: str = "",
        body: str = "",
        *,
        to: str = "news@bizcrusader.example",
        headers: dict[str, str] | None = None,
    ) -> Path:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = f"<m{self.count + 1}-{self.clock.now().timestamp():.0f}@test>"
        for name, value in (headers or {}).items():
            message[name] = value
        message.set_content(body or "\n")
        return self.write(message.as_bytes())

    @property
    def settings(self) -> Settings:
        return load_settings(self.config).settings

    def store(self) -> Store:
        return open_store(self.settings, self.clock)

    def add(self, *emails: str, status: Status = Status.ACTIVE) -> None:
        with self.store().roster.edit() as roster:
            for email in emails:
                roster.add(email, status=status, via=Source.CLI)

    def status(self, email: str) -> Status | None:
        reader = self.store().roster.get(email)
        return reader.status if reader else None

    def statuses(self) -> dict[str, Status]:
        return {reader.email: reader.status for reader in self.store().roster.iter()}

    def mails_to(self, email: str) -> list[Delivery]:
        return self.sendgrid.to(email)


@pytest.fixture
def box(
    clean_env: Path,
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Mail:
    """An installation in ``tmp_path``: the secret key and SendGrid's key in the environment."""
    monkeypatch.setenv("CRUSADER_MAIL_SECRET_KEY", SECRET)
    monkeypatch.setenv("SENDGRID_API_KEY", sendgrid_server.api_key)
    return Mail(tmp_path, clock, sendgrid_server)
