"""The wired pipeline: ``preview``, ``send`` and ``run`` with the real stages and real peers.

The feed is the bundled Biz Crusader example served by the loopback feed server; mail goes to
the loopback SendGrid-like server. Commands run through the CLI with an injected clock.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from peers.feed_server import FeedServer
from peers.sendgrid_server import API_KEY, SendGridServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.models import Status
from crusader_mail.storage.files.subscribers import SubscriberList
from tests.support.feeds import FEED_SERVER_TOML

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
        self.config.write_text(
            f'feeds = ["{feeds.url("/feed/")}"]\n'
            f'templates_dir = "{REPO / "templates"}"\n'
            "[newsletter]\n"
            'name = "Biz Crusader"\nsite_url = "https://bizcrusader.example"\n'
            'from_email = "news@bizcrusader.example"\npostal_address = "12 Market Street"\n'
            "[sendgrid]\n"
            f'api_url = "{api.url}"\nbatch_size = 2\nbackoff_base = 0.01\ntimeout = 10\n'
            "subscription_tracking = true\n"  # the repository-only shape's one-click
            + FEED_SERVER_TOML,
            encoding="utf-8",
        )

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

    def install(self) -> None:
        """The first real run: archive everything, send nothing."""
        self.publish(hidden=2)
        result = self.cli("run")
        assert result.exit_code == 0, result.output
        assert self.api.deliveries == []


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


def test_per_post_cadence_sends_one_post_and_the_rest_wait(site: Site) -> None:
    with site.config.open("a", encoding="utf-8") as handle:
        handle.write('[cadence]\nmode = "per_post"\n')
    site.install()
    site.publish(hidden=0)
    first = site.cli("run", "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert len(report["issue"]["posts"]) == 1
    assert report["issue"]["waiting"] == 1
    second = json.loads(site.cli("run", "--json").stdout)
    assert len(second["issue"]["posts"]) == 1
    assert second["issue"]["posts"] != report["issue"]["posts"]
    assert json.loads(site.cli("run", "--json").stdout)["issue"] is None


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
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("crusader-mail.toml", "examples", "templates", "subscribers"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            shutil.copy(source, copy / name)
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
    from crusader_mail.cli.run import markdown_summary, text_summary
    from crusader_mail.models import FeedReport, SendReport
    from crusader_mail.pipeline import IssueSummary, RunReport

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
