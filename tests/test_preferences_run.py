"""Preferences change who gets the next ``run``'s issues: readers choose on the preferences page
over real HTTP (uvicorn on 127.0.0.1), then a real ``run`` (the CLI, the example feed from the
loopback feed server) sends through the loopback SendGrid. A paused reader, a reader whose
topics the issue does not touch and a reader who left get nothing; a reader whose topics it
touches (in another case) and everyone who chose nothing get it once; the report counts who
was left out and why. Readers are grouped by what they get: every-post readers while the
editor sends digests get an issue per post and no digest; weekly readers while the editor
sends every post get a weekly digest, at most once every 7 days; a reader whose topics pick
some of a digest's posts gets the variant of just those. Each issue goes out once with its own
ledger (a run killed in a variant resumes it, nobody twice), and only the editor's issues are
published. The same on PostgreSQL, preferences stored through the store."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
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
from tests.support.commands import kill_run_when
from tests.support.sending import site_config
from tests.support.site import serve_settings
from tests.support.web import web_app

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "biz-crusader" / "feed.xml"
SECRET = "preferences-run-secret-0123456789"
SERVE = "https://mail.bizcrusader.example"
ARCHIVE = "https://bizcrusader.example/newsletter/"
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
        newsletter = f'topics = ["Closing", "Trust", "Pricing"]\narchive_url = "{ARCHIVE}"\n'
        config = site_config(feeds.url("/feed/"), api.url, newsletter=newsletter)
        self.config.write_text(config, encoding="utf-8")

    def cli(self, *args: str) -> Result:
        app = AppContext(config=self.config, clock=self.clock)
        return CliRunner().invoke(cli, list(args), obj=app, env=self.env)

    def publish(self, hidden: int) -> None:
        self.feeds.add("/feed/", feed_without_newest(hidden), etag=f"hidden-{hidden}")

    def settings(self) -> Settings:
        return serve_settings(
            self.root,
            self.api.url,
            SECRET,
            confirm_url=f"{SERVE}/confirm",
            topics=("Closing", "Trust", "Pricing"),
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

    def configure(self, text: str) -> None:
        with self.config.open("a", encoding="utf-8") as handle:
            handle.write(text)

    def choose(self, choices: Mapping[str, object]) -> None:
        """Add the readers, then make each one's choice on the preferences page."""
        for email in choices:
            added = self.cli("subscribers", "add", email)
            assert added.exit_code == 0, added.output
        with web_app(self.settings(), self.clock) as url:
            for email, choice in choices.items():
                if choice is not None:
                    choose_over_http(url, email, choice)

    def received(self) -> dict[str, Counter[str]]:
        """Reader -> how many times they got each issue (by id)."""
        got: dict[str, Counter[str]] = {}
        for delivery in self.api.deliveries:
            for address in delivery.recipients:
                got.setdefault(address.lower(), Counter())[delivery.custom_args["issue"]] += 1
        return got

    def html(self, issue_id: str) -> str:
        """The HTML part of an issue as SendGrid got it."""
        for delivery in self.api.deliveries:
            if delivery.custom_args["issue"] == issue_id:
                return dict(delivery.content)["text/html"]
        raise AssertionError(f"issue {issue_id} was not sent")

    def statuses(self) -> dict[str, str]:
        lines = (self.root / "state" / "issues.jsonl").read_text(encoding="utf-8").splitlines()
        return {r["issue_id"]: r["status"] for r in map(json.loads, lines[1:])}


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
    elif isinstance(choice, str):  # a frequency
        fields.update(action="save", frequency=choice)
    elif isinstance(choice, tuple):  # a frequency and topics
        fields.update(action="save", frequency=choice[0], topics=list(choice[1]))
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


def test_on_postgresql_readers_get_what_they_chose(site: Site, database_url: str) -> None:
    """The store on PostgreSQL: a paused reader gets nothing, a reader whose topics pick one
    post of the digest gets the variant of that post, an every-post reader an issue per post,
    a weekly reader (the editor sends digests) the digest."""
    site.env["CRUSADER_MAIL_DATABASE_URL"] = database_url
    site.publish(hidden=3)
    site.add_readers()
    assert site.cli("subscribers", "add", "each@example.com").exit_code == 0
    assert site.run()["send"] is None
    settings = site.settings().model_copy(update={"database_url": SecretStr(database_url)})
    store = open_store(settings, site.clock)
    try:
        with store.roster.edit() as changes:
            until = site.clock.now() + timedelta(weeks=8)
            chosen = {
                "paused@example.com": Preferences(paused_until=until),
                "closing@example.com": Preferences(topics=("Closing",)),
                "weekly@example.com": Preferences(frequency=Frequency.WEEKLY),
                "each@example.com": Preferences(frequency=Frequency.EVERY_POST),
            }
            for email, prefs in chosen.items():
                changes.set_preferences(email, prefs, via=Source.WEB)
            changes.unsubscribe("gone@example.com", via=Source.WEB)
    finally:
        store.close()
    site.clock.advance(timedelta(days=7))
    site.publish(hidden=0)
    report = site.run()
    send = report["send"]
    assert isinstance(send, dict)
    digest, variant, *each = (str(i["issue"]["issue_id"]) for i in issues_of(report))  # type: ignore[index]
    assert len(each) == 3
    assert site.received() == {
        "plain@example.com": Counter([digest]),
        "trust@example.com": Counter([digest]),
        "weekly@example.com": Counter([digest]),
        "closing@example.com": Counter([variant]),
        "each@example.com": Counter(each),
    }
    assert CLOSING in site.html(variant)
    assert WHY not in site.html(variant)
    assert send["skipped"]["paused"] == 1
    assert send["skipped"]["topics_variant"] == 1
    assert send["skipped"]["every_post"] == 1
    assert Status.UNSUBSCRIBED.value in send["skipped"]
    assert site.run()["issues"] == []


# the three newest posts of the example feed, newest first, and their topics
WHY = "Why We Started Sending This Newsletter"  # Trust
REINTRODUCE = "Reintroduce Yourself to Existing Clients"  # Trust
CLOSING = "Closing Small Deals Faster"  # Closing


def issues_of(report: Mapping[str, object]) -> list[dict[str, object]]:
    issues = report["issues"]
    assert isinstance(issues, list)
    return issues


def test_digest_mode_every_post_readers_and_topic_variants(site: Site) -> None:
    """``mode = "digest"``: the digest goes to readers who chose nothing; every-post readers
    get one issue per post (those of their topics) and no digest; readers whose topics pick
    some of the digest's posts get a variant of just those, composed once per distinct set."""
    site.publish(hidden=3)
    site.run()
    site.choose(
        {
            "plain@example.com": None,
            "each@example.com": "every_post",
            "each-closing@example.com": ("every_post", ["Closing"]),
            "trust@example.com": ["Trust"],
            "trust2@example.com": ["TRUST"],  # the same posts: the same variant
            "closing@example.com": ["Closing"],
            "paused@example.com": "pause",
        }
    )
    site.clock.advance(timedelta(days=7))
    site.publish(hidden=0)
    job_summary = site.root / "summary.md"
    done = site.cli("run", "--json", "--summary", str(job_summary))
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    issues = issues_of(report)
    shown = job_summary.read_text(encoding="utf-8")
    assert shown.count("- for: every-post readers") == 3
    assert "- for: readers whose topics pick 2 of its 3 posts" in shown
    assert "@" not in shown  # who it went to, never an address
    summary = [(i["issue"]["group"], len(i["issue"]["posts"])) for i in issues]  # type: ignore[index]
    assert summary == [
        ("the list", 3),
        ("readers whose topics pick 1 of its 3 posts", 1),
        ("readers whose topics pick 2 of its 3 posts", 2),
        ("every-post readers", 1),
        ("every-post readers", 1),
        ("every-post readers", 1),
    ]
    digest, closing, trust, *each = (str(i["issue"]["issue_id"]) for i in issues)  # type: ignore[index]
    send = report["send"]
    assert isinstance(send, dict)
    assert send["delivered"] == 1
    assert send["skipped"]["paused"] == 1
    assert send["skipped"]["every_post"] == 2
    assert send["skipped"]["topics_variant"] == 3
    assert site.received() == {
        "plain@example.com": Counter([digest]),
        "trust@example.com": Counter([trust]),
        "trust2@example.com": Counter([trust]),
        "closing@example.com": Counter([closing]),
        "each@example.com": Counter(each),
        "each-closing@example.com": Counter([each[0]]),  # the oldest post: Closing
    }
    html = site.html(trust)
    assert (WHY in html, REINTRODUCE in html, CLOSING in html) == (True, True, False)
    assert (CLOSING in site.html(closing), WHY in site.html(closing)) == (True, False)
    assert (CLOSING in site.html(each[0]), WHY in site.html(each[2])) == (True, True)
    assert f"{ARCHIVE}{digest}.html" in html  # "View in your browser": the editor's issue
    # each its own record; only the editor's is published
    assert site.statuses() == dict.fromkeys([digest, closing, trust, *each], "sent")
    pages = sorted(path.name for path in (site.root / "archive").glob("2026-*.html"))
    assert pages == [f"{digest}.html"]
    again = site.cli("run")
    assert again.exit_code == 0, again.output
    assert "nothing new: no issue sent" in again.stdout
    assert sum(site.received()["each@example.com"].values()) == 3


def test_per_post_mode_weekly_readers_get_a_digest_at_most_every_7_days(site: Site) -> None:
    """``mode = "per_post"``: weekly readers get no per-post issue but a weekly digest of the
    posts since their last one, then none before 7 days have passed, then the next."""
    site.configure('\n[cadence]\nmode = "per_post"\n')
    site.publish(hidden=3)
    site.run()
    site.choose(
        {
            "plain@example.com": None,
            "each@example.com": "every_post",  # the editor's cadence
            "weekly@example.com": "weekly",
            "weekly-trust@example.com": ("weekly", ["Trust"]),
        }
    )
    site.clock.advance(timedelta(days=1))
    site.publish(hidden=2)  # the Closing post
    first = issues_of(site.run())
    assert [i["issue"]["group"] for i in first] == ["the list", "weekly readers"]  # type: ignore[index]
    site.clock.advance(timedelta(days=3))
    site.publish(hidden=1)
    second = issues_of(site.run())
    assert [i["issue"]["group"] for i in second] == ["the list"]  # type: ignore[index]
    site.clock.advance(timedelta(days=4))  # 7 days after the first digest
    site.publish(hidden=0)
    third = issues_of(site.run())
    assert [i["issue"]["group"] for i in third] == ["the list", "weekly readers"]  # type: ignore[index]
    per_post = [str(run[0]["issue"]["issue_id"]) for run in (first, second, third)]  # type: ignore[index]
    weekly = [str(run[-1]["issue"]["issue_id"]) for run in (first, third)]  # type: ignore[index]
    assert site.received() == {
        "plain@example.com": Counter(per_post),
        "each@example.com": Counter(per_post),
        "weekly@example.com": Counter(weekly),
        "weekly-trust@example.com": Counter(weekly[1:]),  # the first had the Closing post only
    }
    assert CLOSING in site.html(weekly[0])
    html = site.html(weekly[1])
    assert (WHY in html, REINTRODUCE in html, CLOSING in html) == (True, True, False)
    assert f"{ARCHIVE}{weekly[1]}.html" not in html  # no public page of its own
    assert site.cli("run").exit_code == 0
    assert sum(sum(c.values()) for c in site.received().values()) == 3 + 3 + 2 + 1  # nothing again


def test_a_run_killed_in_a_variant_resumes_it_and_sends_nobody_twice(site: Site) -> None:
    """``run`` in a real process, killed (SIGKILL) while the variant of the digest for the
    readers of one topic is going out: the next run resumes that variant; no reader gets an
    issue twice, the digest's readers are not sent to again, and those never sent are
    either sent now or in doubt."""
    plain = [f"plain{n}@example.com" for n in range(4)]
    trust = [f"trust{n}@example.com" for n in range(8)]
    site.publish(hidden=3)
    site.run()
    site.choose({**dict.fromkeys(plain), **{reader: ["Trust"] for reader in trust}})
    site.publish(hidden=0)

    def in_variant() -> bool:
        ids = {delivery.custom_args["issue"] for delivery in site.api.deliveries}
        return any(issue.endswith("-topics") for issue in ids) and site.api.in_flight > 0

    site.api.delay = 0.3
    kill_run_when(site.config, site.env, in_variant, "killed in the variant")
    while site.api.in_flight:  # the requests the run was waiting for still land
        time.sleep(0.01)
    site.api.delay = 0.0
    digest, variant = sorted(site.statuses(), key=lambda issue: issue.endswith("-topics"))
    assert site.statuses() == {digest: "sent", variant: "sending"}

    report = site.run()
    resumed = issues_of(report)
    assert [i["issue"]["issue_id"] for i in resumed] == [variant]  # type: ignore[index]
    assert resumed[0]["issue"]["resumed"] is True  # type: ignore[index]
    send = resumed[0]["send"]
    assert isinstance(send, dict)
    received = site.received()
    assert all(n == 1 for counts in received.values() for n in counts.values())  # once
    assert all(received[reader] == Counter([digest]) for reader in plain)
    got = {reader for reader in trust if received.get(reader) == Counter([variant])}
    assert set(received) - set(plain) == got  # a trust reader gets the variant or nothing
    assert len(trust) - len(got) <= send["uncertain"]  # those missed are in doubt
    assert site.statuses() == {digest: "sent", variant: "sent"}
