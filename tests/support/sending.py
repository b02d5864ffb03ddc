"""Helpers shared by the sender's tests (no tests here): settings pointing at the loopback
SendGrid, a fixed issue that uses every placeholder, and a subscriber list on disk."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peers.sendgrid_server import SendGridServer
from pydantic import SecretStr

from crusader_mail.clock import Clock
from crusader_mail.delivery.batches import SendProgress
from crusader_mail.delivery.client import ClientFactory, client_factory
from crusader_mail.delivery.engine import deliver, send_test
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.delivery.transport import BatchTransport, DryRunTransport, SendGridTransport
from crusader_mail.errors import SendError
from crusader_mail.models import Placeholder, RenderedIssue, SendReport, Source, Status
from crusader_mail.settings import NewsletterSettings, SendGridSettings, ServerSettings, Settings
from crusader_mail.storage.files.ledger import FileLedgerStore
from crusader_mail.storage.files.subscribers import SubscriberList
from tests.support.feeds import FEED_SERVER_TOML

SECRET = "test-secret-key-0123456789abcdef"
ISSUE_ID = "2026-11-23-1a2b3c4d"
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def make_settings(
    tmp: Path,
    server: SendGridServer | None = None,
    *,
    secret: str | None = SECRET,
    sendgrid: dict[str, Any] | None = None,
    newsletter: dict[str, Any] | None = None,
) -> Settings:
    sg: dict[str, Any] = {"backoff_base": 0.5, "backoff_max": 8.0, "max_retries": 3}
    if server is not None:
        sg.update(api_key=SecretStr(server.api_key), api_url=server.url)
    sg.update(sendgrid or {})
    news: dict[str, Any] = {
        "name": "Biz Crusader",
        "from_email": "news@bizcrusader.example",
        "from_name": "Biz Crusader",
        "unsubscribe_url": "https://mail.bizcrusader.example/unsubscribe",
    }
    news.update(newsletter or {})
    return Settings(
        state_dir=tmp / "state",
        subscribers_dir=tmp / "subscribers",
        outbox_dir=tmp / "outbox",
        note_file=tmp / "notes" / "next.md",  # never the checkout's own notes/
        archive_dir=tmp / "archive",
        secret_key=SecretStr(secret) if secret else None,
        sendgrid=SendGridSettings(**sg),
        newsletter=NewsletterSettings(**news),
        server=ServerSettings(same_host=True),  # unsubscribe_url is a one-click that counts
    )


def make_issue(subject: str = "Sell more this winter", issue_id: str = ISSUE_ID) -> RenderedIssue:
    html = (
        "<html><body><p>Hello [[name]],</p><p>This week: how to sell more.</p>"
        '<p>Sent to [[email]]. <a href="[[unsubscribe_url]]">Unsubscribe</a></p></body></html>'
    )
    text = "Hello [[name]],\n\nThis week: how to sell more.\n\nSent to [[email]].\nUnsubscribe: [[unsubscribe_url]]\n"
    return RenderedIssue(
        issue_id=issue_id,
        subject=subject,
        preheader="How to sell more",
        html=html,
        text=text,
        placeholders=tuple(Placeholder),
        post_ids=("https://bizcrusader.example/?p=1",),
        related_ids=(),
    )


def reader_address(index: int) -> str:
    return f"reader{index:05d}@example.com"


def make_readers(
    settings: Settings,
    clock: Clock,
    active: int,
    *,
    others: dict[Status, int] | None = None,
) -> SubscriberList:
    """A list with ``active`` readers reader00000@… and a few of each other status."""
    readers = SubscriberList(settings.subscribers_dir, clock)
    with readers.edit() as roster:
        for index in range(active):
            roster.add(reader_address(index), name=f"Reader {index}", via=Source.IMPORT)
        for status, count in (others or {}).items():
            for index in range(count):
                roster.add(f"{status.value}{index}@example.org", status=status, via=Source.IMPORT)
    return readers


def addresses_in(text: str) -> set[str]:
    return {match.lower() for match in EMAIL_RE.findall(text)}


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def ledgers(settings: Settings) -> FileLedgerStore:
    """The delivery ledgers under ``settings.state_dir``."""
    return FileLedgerStore(settings.state_dir, settings.require_secret_key)


def sendgrid(settings: Settings, clock: Clock, **retry: Any) -> SendGridTransport:
    """A transport to the SendGrid of ``settings`` (``retry``: ``sleep``, ``rng``)."""
    return SendGridTransport(settings, clock, client_factory(settings), **retry)


def send_issue(
    issue: RenderedIssue,
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    to: str | None = None,
    resend_uncertain: bool = False,
    progress: SendProgress | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> SendReport:
    """What ``pipeline.send_stage`` does once the issue is planned, for a fixed issue: a test
    send (``to``), or pull the suppressions (not in a dry run), run the ``checkpoint`` (a real
    send) and deliver to the list. The CLI tests use it in place of the stage so their figures
    are known."""
    transport: BatchTransport
    if dry_run:
        transport = DryRunTransport(settings, clock)
    elif factory is None:
        raise SendError("a real send needs a SendGrid client factory (sendgrid.api_key)")
    else:
        transport = SendGridTransport(settings, clock, factory)
    if to is not None:
        return send_test(issue, to, transport, settings, clock)
    readers = SubscriberList(settings.subscribers_dir, clock)
    if factory is not None and not dry_run:
        sync_suppressions(settings, readers, clock, factory)
        if checkpoint is not None:
            checkpoint()
    return deliver(
        issue,
        readers,
        ledgers(settings),
        transport,
        settings,
        clock,
        resend_uncertain=resend_uncertain,
        progress=progress,
    )


def site_config(feed_url: str, api_url: str, *, newsletter: str = "") -> str:
    """A site's ``crusader-mail.toml`` for the tests that run the CLI: one feed, the
    repository's templates, the loopback SendGrid in batches of 2 with SendGrid's own
    one-click (the repository-only shape), the loopback feed server allowed; ``newsletter``:
    more lines of that section."""
    templates = Path(__file__).resolve().parents[2] / "templates"
    return (
        f'feeds = ["{feed_url}"]\n'
        f'templates_dir = "{templates}"\n'
        "[newsletter]\n"
        'name = "Biz Crusader"\nsite_url = "https://bizcrusader.example"\n'
        'from_email = "news@bizcrusader.example"\npostal_address = "12 Market Street"\n'
        f"{newsletter}"
        "[sendgrid]\n"
        f'api_url = "{api_url}"\nbatch_size = 2\nbackoff_base = 0.01\ntimeout = 10\n'
        "subscription_tracking = true\n" + FEED_SERVER_TOML
    )
