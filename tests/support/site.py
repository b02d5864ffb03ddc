"""A newsletter site driven by the real commands: the example feed served by the loopback feed
server (its newest posts held back until published), mail through the loopback SendGrid, its own
clock (no tests here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result
from peers.feed_server import FeedServer
from peers.sendgrid_server import API_KEY, SendGridServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.settings import Settings
from tests.support.feeds import FEED_SERVER_TOML

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "biz-crusader" / "feed.xml"


def feed_without_newest(count: int) -> bytes:
    """The example feed as it was before its ``count`` newest posts were published."""
    feed = EXAMPLE.read_bytes()
    head, _, rest = feed.partition(b"<item>")
    return head + b"".join(b"<item>" + part for part in rest.split(b"<item>")[count:])


def serve_settings(root: Path, api_url: str, secret: str, **newsletter: object) -> Settings:
    """What a ``serve`` beside the job runs with (``server.same_host``, the files store under
    ``root``): the example newsletter's name and sender, plus ``newsletter``."""
    return Settings(
        state_dir=root / "state",
        subscribers_dir=root / "subscribers",
        templates_dir=REPO / "templates",
        secret_key=secret,
        newsletter={
            "name": "Biz Crusader",
            "from_email": "news@bizcrusader.example",
            **newsletter,
        },
        sendgrid={"api_key": API_KEY, "api_url": api_url},
        server={"same_host": True},
    )


class FeedSite:
    """``root/crusader-mail.toml`` for the example feed and the loopback SendGrid; ``newsletter``
    and ``sendgrid`` are more TOML lines for those sections, ``more`` whole sections after
    them. Each :meth:`cli` is a new process context, as from a shell."""

    def __init__(
        self,
        root: Path,
        feeds: FeedServer,
        api: SendGridServer,
        secret: str,
        *,
        newsletter: str = "",
        sendgrid: str = "",
        more: str = "",
    ) -> None:
        self.root, self.feeds, self.api = root, feeds, api
        self.clock = FixedClock(datetime(2026, 11, 24, 7, 17, tzinfo=UTC))
        self.env = {"SENDGRID_API_KEY": API_KEY, "CRUSADER_MAIL_SECRET_KEY": secret}
        root.mkdir()
        self.config = root / "crusader-mail.toml"
        self.config.write_text(
            f'feeds = ["{feeds.url("/feed/")}"]\n'
            f'templates_dir = "{REPO / "templates"}"\n'
            "[newsletter]\n"
            'name = "Biz Crusader"\nsite_url = "https://bizcrusader.example"\n'
            f'from_email = "news@bizcrusader.example"\npostal_address = "12 Market Street"\n'
            f"{newsletter}"
            "[sendgrid]\n"
            f'api_url = "{api.url}"\nbatch_size = 2\nbackoff_base = 0.01\ntimeout = 10\n'
            f"{sendgrid}{more}{FEED_SERVER_TOML}",
            encoding="utf-8",
        )

    def cli(self, *args: str) -> Result:
        app = AppContext(config=self.config, clock=self.clock)
        return CliRunner().invoke(cli, list(args), obj=app, env=self.env)

    def publish(self, hidden: int) -> None:
        """Serve the example feed with its ``hidden`` newest posts not yet published."""
        self.feeds.add("/feed/", feed_without_newest(hidden), etag=f"hidden-{hidden}")

    def run(self, *options: str) -> dict[str, object]:
        """``run --json`` (and ``options``), which must succeed: its report."""
        done = self.cli("run", "--json", *options)
        assert done.exit_code == 0, done.output
        report: dict[str, object] = json.loads(done.stdout)
        return report
