"""Preferences change who gets the next ``run``'s issue: readers choose on the preferences page
over real HTTP (uvicorn on 127.0.0.1), then a real ``run`` (the CLI, the example feed from the
loopback feed server) sends through the loopback SendGrid. A paused reader, a reader whose
topics the issue does not touch and a reader who left get nothing; a reader whose topics it
touches (in another case) and everyone who chose nothing get it once; the report counts who
was left out and why. The same on PostgreSQL, preferences stored through the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from peers.feed_server import FeedServer
from peers.sendgrid_server import API_KEY, SendGridServer
from pydantic import SecretStr

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.models import Frequency, Preferences, Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.feeds import FEED_SERVER_TOML
from tests.support.web import web_app

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "biz-crusader" / "feed.xml"
SECRET = "preferences-run-secret-0123456789"
SERVE = "https://mail.bizcrusader.example"
# the two newest posts of the example feed are about "Client Relationships", "trust", ...
READERS = {
    "plain@example.com": None,  # chose nothing
    "paused@example.com": "pause",
    "closing@example.com": ["Closing"],  # a topic neither new post has
    "trust@example.com": ["TRUST"],  # a topic both have, in another case
    "weekly@example.com": "weekly",  # the editor's digest is the weekly issue
    "gone@example.com": "leave",
}
GETS = {"plain@example.com", "trust@example.com", "weekly@example.com"}


def feed_without_newest(count: int) -> bytes:
    feed = EXAMPLE.read_bytes()
    head, _, rest = feed.partition(b"<item>")
    return head + b"".join(b"<item>" + part for part in rest.split(b"<item>")[count:])


class Site:
    def __init__(self, root: Path, feeds: FeedServer, api: SendGridServer) -> None:
        self.root, self.feeds, self.api = root, feeds, api
        self.clock = FixedClock(datetime(2026, 11, 24, 7, 17, tzinfo=UTC))
        self.env = {"SENDGRID_API_KEY": API_KEY, "CRUSADER_MAIL_SECRET_KEY": SECRET}
        root.mkdir()
        self.config = root / "crusader-mail.toml"
        self.config.write_text(
            f'feeds = ["{feeds.url("/feed/")}"]\n'
            f'templates_dir = "{REPO / "templates"}"\n'
            "[newsletter]\n"
            'name = "Biz Crusader"\nsite_url = "https://bizcrusader.example"\n'
            'from_email = "news@bizcrusader.example"\npostal_address = "12 Market Street"\n'
            'topics = ["Closing", "Trust", "Pricing"]\n'
            "[sendgrid]\n"
            f'api_url = "{api.url}"\nbatch_size = 2\nbackoff_base = 0.01\ntimeout = 10\n'
            "subscription_tracking = true\n" + FEED_SERVER_TOML,
            encoding="utf-8",
        )

    def cli(self, *args: str) -> Result:
        app = AppContext(config=self.config, clock=self.clock)
        return CliRunner().invoke(cli, list(args), obj=app, env=self.env)

    def publish(self, hidden: int) -> None:
        self.feeds.add("/feed/", feed_without_newest(hidden), etag=f"hidden-{hidden}")

    def settings(self) -> Settings:
        return Settings(
            state_dir=self.root / "state",
            subscribers_dir=self.root / "subscribers",
            templates_dir=REPO / "templates",
            secret_key=SECRET,
            newsletter={
                "name": "Biz Crusader",
                "from_email": "news@bizcrusader.example",
                "confirm_url": f"{SERVE}/confirm",
                "topics": ("Closing", "Trust", "Pricing"),
            },
            sendgrid={"api_key": API_KEY, "api_url": self.api.url},
            server={"same_host": True},
        )

    def add_readers(self) -> None:
        for email in READERS:
            added = self.cli("subscribers", "add", email)
            assert added.exit_code == 0, added.output

    def run(self) -> dict[str, object]:
        done = self.cli("run", "--json")
        assert done.exit_code == 0, done.output
        report: dict[str, object] = json.loads(done.stdout)
        return report


@pytest.fixture
def site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    with SendGridServer() as api:
        yield Site(tmp_path / "site", feed_server, api)


def choose_over_http(url: str, email: str, choice: object) -> None:
    token = Signer(SECRET).make(Purpose.PREFERENCES, email, datetime.now(UTC))
    fields: dict[str, str | list[str]] = {"token": token}
    if choice == "pause":
        fields.update(action="pause", weeks="4")
    elif choice == "leave":
        fields.update(action="leave")
    elif choice == "weekly":
        fields.update(action="save", frequency="weekly")
    else:
        fields.update(action="save", frequency="", topics=list(choice))  # type: ignore[call-overload]
    answer = httpx.post(f"{url}/preferences", data=fields, headers={"Origin": SERVE}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_pause_topics_and_leave_change_who_gets_the_next_issue(site: Site) -> None:
    site.publish(hidden=2)
    site.add_readers()
    assert site.run()["send"] is None  # the first run archives everything, sends nothing
    with web_app(site.settings(), site.clock) as url:
        for email, choice in READERS.items():
            if choice is not None:
                choose_over_http(url, email, choice)
    site.clock.advance(timedelta(days=7))
    site.publish(hidden=0)
    report = site.run()
    send = report["send"]
    assert isinstance(send, dict)
    got = {address.lower() for delivery in site.api.deliveries for address in delivery.recipients}
    assert got == GETS
    assert sum(len(d.recipients) for d in site.api.deliveries) == len(GETS)  # once each
    assert send["delivered"] == len(GETS)
    assert send["skipped"]["paused"] == 1
    assert send["skipped"]["other_topics"] == 1
    assert send["skipped"]["unsubscribed"] == 1
    # four weeks on the pause is over by itself: nothing has to be written for it
    kept = open_store(site.settings(), site.clock).roster.preferences()["paused@example.com"]
    assert kept.paused(site.clock.now())
    assert not kept.paused(site.clock.now() + timedelta(weeks=4))


def test_on_postgresql_a_paused_reader_and_other_topics_are_left_out(
    site: Site, database_url: str
) -> None:
    site.env["CRUSADER_MAIL_DATABASE_URL"] = database_url
    site.publish(hidden=2)
    site.add_readers()
    assert site.run()["send"] is None
    settings = site.settings().model_copy(update={"database_url": SecretStr(database_url)})
    store = open_store(settings, site.clock)
    try:
        with store.roster.edit() as changes:
            until = site.clock.now() + timedelta(weeks=8)
            changes.set_preferences(
                "paused@example.com", Preferences(paused_until=until), via=Source.WEB
            )
            changes.set_preferences(
                "closing@example.com", Preferences(topics=("Closing",)), via=Source.WEB
            )
            changes.set_preferences(
                "weekly@example.com", Preferences(frequency=Frequency.WEEKLY), via=Source.WEB
            )
            changes.unsubscribe("gone@example.com", via=Source.WEB)
    finally:
        store.close()
    site.clock.advance(timedelta(days=7))
    site.publish(hidden=0)
    send = site.run()["send"]
    assert isinstance(send, dict)
    got = {address.lower() for delivery in site.api.deliveries for address in delivery.recipients}
    assert got == {"plain@example.com", "trust@example.com", "weekly@example.com"}
    assert send["skipped"]["paused"] == 1
    assert send["skipped"]["other_topics"] == 1
    assert Status.UNSUBSCRIBED.value in send["skipped"]
