"""What the benchmarks send and compose: settings for a folder, and a real issue composed by the
library from the bundled Biz Crusader feed (no test code: the benchmarks import only the
product and the loopback peers)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from crusader_mail.clock import FixedClock
from crusader_mail.compose.composer import Composer
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.models import RenderedIssue
from crusader_mail.settings import NewsletterSettings, SendGridSettings, ServerSettings, Settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_FEED = REPO / "examples" / "biz-crusader" / "feed.xml"
NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
SECRET = "bench-secret-key-0123456789abcdef"


def bench_settings(folder: Path, **sendgrid: Any) -> Settings:
    """Settings of the bundled example with every state folder under ``folder``."""
    return Settings(
        templates_dir=REPO / "templates",
        state_dir=folder / "state",
        subscribers_dir=folder / "subscribers",
        outbox_dir=folder / "outbox",
        secret_key=SecretStr(SECRET),
        sendgrid=SendGridSettings(**sendgrid),
        newsletter=NewsletterSettings(
            name="Biz Crusader",
            site_url="https://bizcrusader.example",
            from_email="news@bizcrusader.example",
            from_name="Biz Crusader",
            postal_address="Biz Crusader, 12 Market Street, Springfield, IL 62701, USA",
            unsubscribe_url="https://mail.bizcrusader.example/unsubscribe",
        ),
        server=ServerSettings(same_host=True),  # the https one-click counts: in every body
    )


def example_issue(settings: Settings, posts: int = 3) -> RenderedIssue:
    """The newest ``posts`` posts of the bundled feed composed into one issue, with the next
    three as its related posts."""
    with make_client(settings.fetch) as client:
        read = read_feed(str(EXAMPLE_FEED), client, settings.fetch, None, FixedClock(NOW))
    ordered = sorted(read.posts, key=lambda post: post.published, reverse=True)
    chosen, related = ordered[:posts], ordered[posts : posts + 3]
    return Composer(settings).compose(chosen, related, "2026-11-23-bench000", NOW)
