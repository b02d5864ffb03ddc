"""The wired pipeline: ``preview``, ``send`` and ``run`` with the real stages and real peers.

The feed is the bundled Biz Crusader example served by the loopback feed server; mail goes to
the loopback SendGrid-like server. Commands run through the CLI with an injected clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from peers.feed_server import FeedServer
from peers.sendgrid_server import API_KEY, SendGridServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.models import Status
from crusader_mail.settings import SendGridSettings
from crusader_mail.storage.files.subscribers import SubscriberList
from tests.support.commands import demo_copy, kill_run_when
from tests.support.sending import site_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "biz-crusader" / "feed.xml"
CLI = Path(sys.executable).with_name("crusader-mail")
ACTIVE = sorted(
    s.email.lower()
    for s in SubscriberList(
        REPO / "subscribers", FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    ).iter(Status.ACTIVE)
)
SECRET = "pipeline-test-secret-key-0123456789"
CHOOSER = random.SystemRandom()


def items(feed: bytes) -> list[bytes]:
    rest = feed.partition(b"<item>")[2]
    return [b"<item>" + part for part in rest.split(b"<item>")]


def feed_without_newest(count: int) -> bytes:
    """The example feed as it was before its ``count`` newest posts were published."""
    feed = EXAMPLE.read_bytes()
    head = feed.partition(b"<item>")[0]
    kept = items(feed)[count:]  # the last item still carries </channel></rss>
    return head + b"".join(kept)


class Site:
    def __init__(self, root: Path, feeds: FeedServer, api: SendGridServer) -> None:
        self.root = root
        self.feeds = feeds
        self.api = api
        self.clock = FixedClock(datetime(2026, 11, 24, 7, 17, tzinfo=UTC))
        root.mkdir()
        (root / "subscribers").mkdir()
        (root / "subscribers" / "subscribers.csv").write_bytes(
            (REPO / "subscribers" / "subscribers.csv").read_bytes()
        )
        self.config = root / "crusader-mail.toml"
        self.config.write_text(site_config(feeds.url("/feed/"), api.url), encoding="utf-8")

    def publish(self, hidden: int) -> None:
        """Serve the example feed with its ``hidden`` newest posts not yet published."""
        body = feed_without_newest(hidden) if hidden else EXAMPLE.read_bytes()
        self.feeds.add("/feed/", body, etag=f"hidden-{hidden}")

    def cli(self, *args: str, secrets: bool = True) -> Result:
        app = AppContext(config=self.config, clock=self.clock)
        env = {"SENDGRID_API_KEY": API_KEY, "CRUSADER_MAIL_SECRET_KEY": SECRET}
        if not secrets:
            env = {"SENDGRID_API_KEY": "", "CRUSADER_MAIL_SECRET_KEY": ""}
        return CliRunner().invoke(cli, list(args), obj=app, env=env)

    def state_bytes(self) -> dict[str, str]:
        """A fingerprint of every state file (archive, history, ledgers, subscriber list)."""
        found = {}
        for folder in ("state", "subscribers"):
            for path in sorted((self.root / folder).rglob("*")):
                if path.is_file() and not path.name.endswith(".lock"):
                    found[str(path.relative_to(self.root))] = hashlib.sha256(
                        path.read_bytes()
                    ).hexdigest()
        return found

    def install(self, hidden: int = 2) -> Result:
        """The first real run: archive everything, send nothing."""
        self.publish(hidden=hidden)
        result = self.cli("run")
        assert result.exit_code == 0, result.output
        assert self.api.deliveries == []
        return result

    def configure(self, text: str) -> None:
        with self.config.open("a", encoding="utf-8") as handle:
            handle.write(text)

    def set_feeds(self, *urls: str) -> None:
        lines = self.config.read_text(encoding="utf-8").splitlines(keepends=True)
        lines[0] = f"feeds = {json.dumps(list(urls))}\n"
        self.config.write_text("".join(lines), encoding="utf-8")

    def statuses(self) -> dict[str, str]:
        """Issue id -> status, from the issue history."""
        lines = (self.root / "state" / "issues.jsonl").read_text(encoding="utf-8").splitlines()
        return {r["issue_id"]: r["status"] for r in map(json.loads, lines[1:])}

    def received(self) -> dict[str, Counter[str]]:
        """Subject -> how many times each reader received it."""
        got: dict[str, Counter[str]] = {}
        for delivery in self.api.deliveries:
            for address in delivery.recipients:
                got.setdefault(delivery.subject, Counter())[address.lower()] += 1
        return got


@pytest.fixture
def site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    with SendGridServer() as api:
        yield Site(tmp_path / "site", feed_server, api)


def test_dry_run_needs_no_secrets_and_changes_no_byte(site: Site) -> None:
    site.install()
    site.publish(hidden=0)
    before = site.state_bytes()
    calls = len(site.api.log)
    result = site.cli("run", "--dry-run", "--json", secrets=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert site.state_bytes() == before
    assert len(site.api.log) == calls  # no request at all, not even for suppressions
    assert len(report["issue"]["posts"]) == 2
    assert report["send"]["recipients"] == len(ACTIVE)
    outbox = site.root / "outbox"
    assert (outbox / "newsletter.html").is_file()
    assert list(outbox.glob("*.eml"))
    assert "@example" not in result.output


def test_preview_of_the_real_plan_changes_no_byte(site: Site) -> None:
    site.install()
    site.publish(hidden=0)
    before = site.state_bytes()
    result = site.cli("preview", "--json", "--out", str(site.root / "preview"))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert len(shown["posts"]) == 2
    assert site.state_bytes() == before
    sent = site.cli("send", "--json")
    assert sent.exit_code == 0, sent.output
    # What preview showed is what went out.
    history = (site.root / "state" / "issues.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(history[-1])
    assert record["post_ids"] == shown["posts"]
    assert record["related_ids"] == shown["related"]
    assert (
        site.api.deliveries[0].subject
        == (site.root / "preview" / "subject.txt").read_text(encoding="utf-8").strip()
    )


def test_send_delivers_once_then_has_nothing_to_send(site: Site) -> None:
    site.install()
    site.publish(hidden=0)
    first = site.cli("send", "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["delivered"] == len(ACTIVE)
    assert sorted(site.api.per_address()) == sorted(ACTIVE)
    again = site.cli("send", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["issue"] is None
    assert sum(site.api.per_address().values()) == len(ACTIVE)


def test_test_send_goes_to_one_address_and_changes_nothing(site: Site) -> None:
    site.install()  # nothing is new: the test send uses the newest post
    before = site.state_bytes()
    result = site.cli("send", "--to", "editor@example.com", "--json")
    assert result.exit_code == 0, result.output
    assert site.state_bytes() == before
    assert not (site.root / "state" / "ledger").exists()
    [delivery] = site.api.deliveries
    assert delivery.to == ("editor@example.com",)
    assert delivery.subject.startswith("[TEST] ")


def test_rejected_send_fails_in_one_line_and_the_next_run_resumes(site: Site) -> None:
    site.install()
    site.publish(hidden=0)
    site.api.fail(401, paths="/v3/mail/send")
    summary = site.root / "summary.md"
    failed = site.cli("run", "--summary", str(summary))
    assert failed.exit_code == 1
    errors = [line for line in failed.output.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "api_key" in errors[0]
    assert "Traceback" not in failed.output
    assert "The send failed" in summary.read_text(encoding="utf-8")
    history = (site.root / "state" / "issues.jsonl").read_text(encoding="utf-8")
    assert '"sending"' in history

    resumed = site.cli("run", "--json")
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(resumed.stdout)
    assert report["issue"]["resumed"] is True
    assert report["send"]["uncertain"] == 0  # a refused batch is not in doubt: it is resent
    assert sorted(site.api.per_address()) == sorted(ACTIVE)
    assert set(site.api.per_address().values()) == {1}
    assert '"sent"' in (site.root / "state" / "issues.jsonl").read_text(encoding="utf-8")


PER_POST = '[cadence]\nmode = "per_post"\n'
CHECKPOINT_LOG = """\
import json, pathlib, sys
state = pathlib.Path(sys.argv[1]) / "state"
lines = (state / "issues.jsonl").read_text(encoding="utf-8").splitlines()[1:]
seen = {"statuses": [json.loads(line)["status"] for line in lines],
        "ledgers": sorted(p.stem for p in (state / "ledger").glob("*.jsonl"))}
with (state.parent / "checkpoints.jsonl").open("a", encoding="utf-8") as log:
    log.write(json.dumps(seen) + "\\n")
"""


def test_per_post_sends_each_new_post_as_its_own_issue_in_one_run(site: Site) -> None:
    site.configure(PER_POST)
    site.install(hidden=3)
    site.publish(hidden=0)
    script = site.root / "checkpoint.py"
    script.write_text(CHECKPOINT_LOG, encoding="utf-8")
    summary = site.root / "summary.md"
    checkpoint = f"{sys.executable} {script} {site.root}"
    result = site.cli("run", "--json", "--checkpoint", checkpoint, "--summary", str(summary))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    issues = report["issues"]
    assert len(issues) == 3
    assert [len(done["issue"]["posts"]) for done in issues] == [1, 1, 1]
    assert report["issue"] == issues[0]["issue"]  # the first issue under the old keys
    assert report["send"] == issues[0]["send"]
    newest_three = [item.split(b"<guid", 1)[1] for item in items(EXAMPLE.read_bytes())[:3]]
    sent_ids = [done["issue"]["posts"][0] for done in issues]
    for guid, sent in zip(reversed(newest_three), sent_ids, strict=True):  # oldest first
        assert sent.encode() in guid
    # each post went to every reader exactly once, in requests of two readers
    received = site.received()
    assert sorted(received) == sorted(done["issue"]["subject"] for done in issues)
    assert all(counts == dict.fromkeys(ACTIVE, 1) for counts in received.values())
    per_issue = -(-len(ACTIVE) // 2)
    assert len(site.api.mail_requests()) == 3 * per_issue
    assert all(done["send"]["delivered"] == len(ACTIVE) for done in issues)
    # one record and one ledger per issue; the checkpoint ran before each one's first request
    ids = [done["issue"]["issue_id"] for done in issues]
    assert site.statuses() == dict.fromkeys(ids, "sent")
    ledgers = sorted(p.stem for p in (site.root / "state" / "ledger").glob("*.jsonl"))
    assert ledgers == sorted(ids)
    log = (site.root / "checkpoints.jsonl").read_text(encoding="utf-8").splitlines()
    seen = [json.loads(line) for line in log]
    assert [entry["statuses"].count("sending") for entry in seen] == [1, 1, 1]
    assert [entry["statuses"].count("sent") for entry in seen] == [0, 1, 2]
    assert [len(entry["ledgers"]) for entry in seen] == [0, 1, 2]
    text = summary.read_text(encoding="utf-8")
    assert "3 issues, one after the other" in text
    assert all(done["issue"]["issue_id"] in text for done in issues)
    # nothing is due any more
    again = json.loads(site.cli("run", "--json").stdout)
    assert again["issues"] == []
    assert len(site.api.mail_requests()) == 3 * per_issue


def test_per_post_dry_run_shows_every_issue_and_changes_nothing(site: Site) -> None:
    site.configure(PER_POST)
    site.install(hidden=3)
    site.publish(hidden=0)
    before = site.state_bytes()
    calls = len(site.api.log)
    result = site.cli("run", "--dry-run", secrets=False)
    assert result.exit_code == 0, result.output
    assert site.state_bytes() == before
    assert len(site.api.log) == calls
    assert "3 issues, one after the other" in result.stdout
    outbox = site.root / "outbox"
    folders = [outbox, outbox / "issue-2", outbox / "issue-3"]
    subjects = {(folder / "subject.txt").read_text(encoding="utf-8") for folder in folders}
    assert len(subjects) == 3
    for folder in folders:
        assert f"newsletter: {folder / 'newsletter.html'}" in result.stdout
        assert (folder / "summary.json").is_file()
    assert result.stdout.count("would go to 4 readers") == 3


def test_per_post_killed_mid_way_resumes_and_sends_no_post_twice(site: Site) -> None:
    """``run`` in a real process, killed (SIGKILL) while an issue is going out: the next run
    finishes that issue and sends the rest, and no reader gets any post twice."""
    site.configure(PER_POST)
    site.install(hidden=3)
    site.publish(hidden=0)
    per_issue = -(-len(ACTIVE) // 2)
    # requests accepted before the kill; two or more still to go, so that with requests in
    # flight (sendgrid.concurrency) the run cannot finish before it is killed
    after = CHOOSER.randrange(1, 3 * per_issue - 1)
    label = f"killed with request {after + 1} of {3 * per_issue} in flight"
    secrets = {"SENDGRID_API_KEY": API_KEY, "CRUSADER_MAIL_SECRET_KEY": SECRET}
    site.api.delay = 0.3
    kill_run_when(
        site.config,
        secrets,
        lambda: site.api.accepted_requests >= after and site.api.in_flight > 0,
        label,
    )
    while site.api.in_flight:  # the request the run was waiting for still lands
        time.sleep(0.01)
    site.api.delay = 0.0
    assert all(n == 1 for c in site.received().values() for n in c.values()), label

    resumed = site.cli("run", "--json")
    assert resumed.exit_code == 0, f"{label}: {resumed.output}"
    report = json.loads(resumed.stdout)
    assert report["issues"][0]["issue"]["resumed"] is True, label
    # the batches in flight at the kill (2 readers each, at most sendgrid.concurrency of them)
    # are in doubt: the one the peer was answering landed, the others may never have gone out
    uncertain = report["issues"][0]["send"]["uncertain"]
    assert uncertain % 2 == 0, label
    assert 2 <= uncertain <= 2 * SendGridSettings().concurrency, label
    assert [done["issue"]["resumed"] for done in report["issues"][1:]] == [False] * (
        len(report["issues"]) - 1
    )
    received = site.received()
    assert len(received) == 3, label
    assert all(set(counts) <= set(ACTIVE) for counts in received.values()), label
    assert all(n == 1 for counts in received.values() for n in counts.values()), label  # once
    first, *others = sorted(received.values(), key=len)
    assert all(counts == dict.fromkeys(ACTIVE, 1) for counts in others), label
    missed = len(ACTIVE) - len(first)  # in doubt and never sent: not sent again either
    assert missed <= uncertain - 2, label
    assert len(site.api.mail_requests()) == 3 * per_issue - missed // 2, label
    assert set(site.statuses().values()) == {"sent"}, label
    assert len(site.statuses()) == 3, label


def test_per_post_stops_at_a_failed_checkpoint_and_the_next_run_goes_on(site: Site) -> None:
    site.configure(PER_POST)
    site.install(hidden=3)
    site.publish(hidden=0)
    calls = site.root / "calls"
    fail_second = f"sh -c 'echo x >> {calls}; test $(wc -l < {calls}) -ne 2'"
    failed = site.cli("run", "--json", "--checkpoint", fail_second)
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    assert "--checkpoint 'sh' failed (exit 1)" in report["error"]
    first, second = report["issues"]
    assert first["send"]["delivered"] == len(ACTIVE)
    assert second["send"] is None  # not one request: its record is back to composed
    assert sorted(site.statuses().values()) == ["composed", "sent"]
    assert len(site.received()) == 1
    again = json.loads(site.cli("run", "--json").stdout)
    assert [d["issue"]["resumed"] for d in again["issues"]] == [True, False]
    assert again["issues"][0]["issue"]["issue_id"] == second["issue"]["issue_id"]
    received = site.received()
    assert len(received) == 3
    assert all(counts == dict.fromkeys(ACTIVE, 1) for counts in received.values())


def test_per_post_sends_nothing_after_an_issue_whose_every_reader_is_in_doubt(
    site: Site,
) -> None:
    """The run died after its checkpoint and before the ledger (here: the checkpoint kills
    it): the next run refuses that issue, and the posts after it wait too."""
    site.configure(PER_POST)
    site.install(hidden=3)
    site.publish(hidden=0)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(site.root),
           "SENDGRID_API_KEY": API_KEY, "CRUSADER_MAIL_SECRET_KEY": SECRET}  # fmt: skip
    killed = subprocess.run(
        [str(CLI), "--config", str(site.config), "run", "--checkpoint", "sh -c 'kill -9 $PPID'"],
        cwd=site.root, env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    assert list(site.statuses().values()) == ["sending"]
    refused = site.cli("run", "--json")
    assert refused.exit_code == 1
    report = json.loads(refused.stdout)
    assert "in doubt and nothing was sent" in report["error"]
    assert [d["send"]["uncertain"] for d in report["issues"]] == [len(ACTIVE)]
    assert site.api.mail_requests() == []
    assert list(site.statuses().values()) == ["sending"]


def test_a_feed_added_later_mails_none_of_its_back_catalogue(site: Site, corpus: Path) -> None:
    """A real Blogger feed (25 posts) added to an installed newsletter: its posts are archived
    as backlog, the next issue carries only what is new, and its later posts are new."""
    site.install()
    blogger = corpus / "feeds" / "rss2email_rss2email__quiltville_feed.atom"
    added = site.feeds.add("/quiltville.atom", blogger.read_bytes())
    site.set_feeds(site.feeds.url("/feed/"), added)
    site.publish(hidden=0)
    summary = site.root / "summary.md"
    result = site.cli("run", "--summary", str(summary))
    assert result.exit_code == 0, result.output
    note = (
        f"feed {added}: 25 earlier posts archived as backlog; "
        "`crusader-mail run --include-backlog N` sends the N newest"
    )
    assert note in result.stdout
    assert note in summary.read_text(encoding="utf-8")
    history = (site.root / "state" / "issues.jsonl").read_text(encoding="utf-8").splitlines()
    [record] = [json.loads(line) for line in history[1:]]
    assert len(record["post_ids"]) == 2  # the two new posts of the installed feed, no more
    assert not [i for i in record["post_ids"] + record["related_ids"] if "quiltville" in i]

    # the added feed's next post is new
    site.clock.advance(timedelta(days=7))
    fresh = (
        "<entry><id>tag:quiltville.example,2026:post-new</id><title>A new quilt</title>"
        '<link rel="alternate" href="https://quiltville.example/new.html"/>'
        f"<published>{site.clock.now().isoformat()}</published>"
        '<content type="html">Fresh.</content></entry>'
    )
    site.feeds.add(
        "/quiltville.atom", blogger.read_bytes().replace(b"<entry>", fresh.encode() + b"<entry>", 1)
    )
    later = json.loads(site.cli("run", "--json").stdout)
    assert later["backlog"]["posts"] == 0
    assert [done["issue"]["posts"] for done in later["issues"]] == [
        ["tag:quiltville.example,2026:post-new"]
    ]


def test_first_run_says_what_went_to_the_backlog_and_how_to_send_some(site: Site) -> None:
    site.publish(hidden=0)
    summary = site.root / "summary.md"
    first = site.cli("run", "--summary", str(summary))
    assert first.exit_code == 0, first.output
    count = len(items(EXAMPLE.read_bytes()))
    note = (
        f"first run: {count} posts already in the feeds archived as backlog, not sent; "
        "`crusader-mail run --include-backlog N` sends the N newest"
    )
    assert note in first.stdout
    assert note in summary.read_text(encoding="utf-8")
    assert site.api.deliveries == []
    quiet = site.cli("run", "--json")  # nothing new and nothing more in the backlog: no note
    assert json.loads(quiet.stdout)["backlog"] == {"first_run": False, "posts": 0, "feeds": {}}
    released = json.loads(site.cli("run", "--json", "--include-backlog", "1").stdout)
    assert len(released["issues"]) == 1
    assert len(released["issue"]["posts"]) == 1


def test_min_posts_holds_an_issue_back(site: Site) -> None:
    with site.config.open("a", encoding="utf-8") as handle:
        handle.write("[cadence]\nmin_posts = 3\n")
    site.install()
    site.publish(hidden=0)
    result = site.cli("run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["issue"] is None
    assert site.api.deliveries == []


def test_demo_command_on_a_copy_of_the_repository(tmp_path: Path) -> None:
    """What ``make demo`` runs, on a copy so the test writes nothing into the repository."""
    copy = demo_copy(tmp_path / "repo")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(CLI), "run", "--dry-run", "--include-backlog", "3"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "newsletter: " in done.stdout
    assert "outbox: " in done.stdout
    assert (copy / "outbox" / "newsletter.html").is_file()
    assert not (copy / "state").exists() or not any((copy / "state").iterdir())


def test_job_summary_escapes_what_feeds_control() -> None:
    from crusader_mail.models import FeedReport, SendReport
    from crusader_mail.pipeline import IssueSummary, RunReport
    from crusader_mail.pipeline.summary import markdown_summary, text_summary

    report = RunReport(
        dry_run=False,
        feeds=[FeedReport(url="https://a.example/feed|x", status="error", error="bad\n| row")],
        issue=IssueSummary(
            issue_id="2026-11-24-abcdef12",
            subject="Prices | <script>alert(1)</script>\nnew line",
            posts=["p1"],
            related=[],
            html_bytes=100,
            resumed=False,
            waiting=0,
            notes=[],
        ),
        send=SendReport(
            issue="2026-11-24-abcdef12", dry_run=False, recipients=1, delivered=1, requests=1
        ),
    )
    summary = markdown_summary(report)
    table_rows = [line for line in summary.splitlines() if line.startswith("| https")]
    assert len(table_rows) == 1
    assert table_rows[0].count(" | ") == 3  # four cells: the pipes in the URL and error are escaped
    assert "<script>" not in summary
    assert "Prices \\| &lt;script&gt;alert(1)&lt;/script&gt; new line" in summary
    text = text_summary(report)
    assert "delivered to 1 reader in 1 request" in text


@pytest.mark.imap
def test_run_processes_the_imap_inbox_first(site: Site) -> None:
    """The weekly run reads the mailbox: a subscribe request gets its confirmation mail."""
    import imaplib

    from peers import dovecot

    if not dovecot.available():
        pytest.skip("dovecot is not installed (make services)")
    server = dovecot.start_dovecot()
    try:
        message = (REPO / "tests" / "fixtures" / "mail" / "subscribe-by-address.eml").read_bytes()
        with imaplib.IMAP4_SSL(
            server.host, server.port, ssl_context=server.ssl_context(), timeout=10
        ) as client:
            client.login(server.user, server.password)
            client.append("INBOX", None, None, message)
            client.logout()
        with site.config.open("a", encoding="utf-8") as handle:
            handle.write(
                f'[imap]\nhost = "{server.host}"\nport = {server.port}\n'
                f'user = "{server.user}"\nca_file = "{server.ca_file}"\n'
            )
        site.publish(hidden=0)
        app = AppContext(config=site.config, clock=site.clock)
        env = {
            "SENDGRID_API_KEY": API_KEY,
            "CRUSADER_MAIL_SECRET_KEY": SECRET,
            "CRUSADER_MAIL_IMAP__PASSWORD": server.password,
        }
        result = CliRunner().invoke(cli, ["run", "--json"], obj=app, env=env)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["inbox"]["processed"] == 1
        assert [a["command"] for a in report["inbox"]["actions"]] == ["subscribe"]
        assert "jane@reader.example" not in result.stdout  # masked in the report
        [confirmation] = site.api.to("jane@reader.example")
        assert "confirm" in confirmation.subject.lower()
        # SendGrid's suppressions were pulled before any mail was handled or sent
        methods = [entry.method for entry in site.api.log]
        assert "GET" in methods
        assert methods.index("POST") > max(i for i, m in enumerate(methods) if m == "GET")
        pending = SubscriberList(site.root / "subscribers", site.clock).get("jane@reader.example")
        assert pending is not None
        assert pending.status is Status.PENDING
        again = CliRunner().invoke(cli, ["run", "--json"], obj=app, env=env)
        assert json.loads(again.stdout)["inbox"]["processed"] == 0  # handled once
    finally:
        server.stop()
