"""Replies go out after the change that queued them: the one drain, one drain at a time in a
server, and the commands that send what is waiting."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from peers.sendgrid_server import SendGridServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.delivery.mailer import RecordingMailer
from crusader_mail.errors import SendError
from crusader_mail.models import OutgoingMessage, Source
from crusader_mail.pipeline import run as run_pipeline
from crusader_mail.storage import open_store
from crusader_mail.storage.contract import Store
from crusader_mail.subscriptions.outbox import Drainer, OutboxReport, send_queued
from tests.support.inbox import make_settings, write_config


def reply(to: str) -> OutgoingMessage:
    return OutgoingMessage(to_email=to, subject="You have left", text="Goodbye.\n")


def queue(store: Store, *addresses: str) -> None:
    with store.roster.edit() as changes:
        for address in addresses:
            changes.add(address, via=Source.CLI)
            changes.queue_mail(reply(address))


class Flaky:
    """Fails for the addresses in ``down``; records what it sent."""

    def __init__(self, *down: str) -> None:
        self.down = set(down)
        self.sent: list[str] = []

    def send_one(self, message: OutgoingMessage) -> None:
        if message.to_email in self.down:
            raise SendError("SendGrid did not accept it (HTTP 503)")
        self.sent.append(message.to_email)


@pytest.fixture
def store(clean_env: Path, tmp_path: Path, clock: FixedClock) -> Store:
    return open_store(make_settings(tmp_path), clock)


def test_a_drain_sends_what_is_due_and_stops_at_the_first_failure(
    store: Store, clock: FixedClock
) -> None:
    queue(store, "a@example.com", "b@example.com", "c@example.com")
    mailer = Flaky("b@example.com")
    report = send_queued(store, mailer, clock)
    assert mailer.sent == ["a@example.com"]  # c waits: SendGrid is probably down
    assert report == OutboxReport(sent=1, failed=1, waiting=2)
    assert report.line() == "replies: 1 sent, 1 failed (kept, tried again later), 2 waiting"
    mailer.down.clear()
    assert send_queued(store, mailer, clock) == OutboxReport(sent=1, failed=0, waiting=1)
    assert mailer.sent == ["a@example.com", "c@example.com"]  # b waits after its failure
    clock.advance(timedelta(minutes=3))
    assert send_queued(store, mailer, clock) == OutboxReport(sent=1, failed=0, waiting=0)
    assert mailer.sent[-1] == "b@example.com"


def test_a_server_drains_one_at_a_time_and_never_leaves_a_reply_behind(
    store: Store, clock: FixedClock
) -> None:
    started, release = threading.Event(), threading.Event()

    class Slow(RecordingMailer):
        def send_one(self, message: OutgoingMessage) -> None:
            started.set()
            assert release.wait(30)
            super().send_one(message)

    mailer = Slow()
    drain = Drainer(store, mailer, clock)
    queue(store, "a@example.com")
    first = threading.Thread(target=drain)
    first.start()
    try:
        assert started.wait(30)
        queue(store, "b@example.com")  # a reply queued while the drain is busy
        drain()  # returns at once: the running drain takes it
        assert [m.to_email for m in mailer.sent] == []
    finally:
        release.set()
        first.join(30)
    assert [m.to_email for m in mailer.sent] == ["a@example.com", "b@example.com"]
    assert store.mail.waiting() == 0


def test_run_first_sends_the_replies_left_over(
    clean_env: Path, tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, server={"same_host": True})  # a way out: one-click
    queue(open_store(settings, clock), "a@example.com")
    mailer = RecordingMailer()
    report = run_pipeline(settings, clock, None, dry_run=False, mailer=mailer)
    assert report.replies == {"sent": 1, "failed": 0, "waiting": 0}
    assert [m.to_email for m in mailer.sent] == ["a@example.com"]
    dry = run_pipeline(settings, clock, None, dry_run=True, mailer=RecordingMailer())
    assert dry.replies is None  # a dry run sends nothing


def test_subscribers_add_sends_the_replies_waiting(
    clean_env: Path,
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = AppContext(config=write_config(tmp_path, sendgrid_server.url), clock=clock)
    monkeypatch.setenv("CRUSADER_MAIL_SECRET_KEY", "cli-outbox-secret-0123456789")
    out = CliRunner().invoke(cli, ["subscribers", "add", "new@example.com"], obj=app)
    assert out.output == "added n•••@example.com (active)\n"  # nothing waits: no word of it
    queue(open_store(app.settings, clock), "left@example.com")
    no_key = CliRunner().invoke(
        cli, ["subscribers", "add", "x@example.com"], obj=AppContext(app.config, clock)
    )
    assert no_key.exit_code == 0
    assert "1 reply waiting: sent by the next command run with SENDGRID_API_KEY" in no_key.output
    assert sendgrid_server.deliveries == []
    monkeypatch.setenv("SENDGRID_API_KEY", sendgrid_server.api_key)
    done = CliRunner().invoke(
        cli, ["subscribers", "add", "y@example.com"], obj=AppContext(app.config, clock)
    )
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == "replies: 1 sent, 0 waiting"
    [goodbye] = sendgrid_server.to("left@example.com")
    assert goodbye.subject == "You have left"
