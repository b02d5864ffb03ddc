"""The weekly workflow, played step by step in a temporary git repository.

Each "workflow run" does what ``.github/workflows/newsletter.yml`` does: ``crusader-mail run``
in a real subprocess (the installed console script), then ``scripts/commit-state.sh state
subscribers`` pushing to a bare repository that stands in for GitHub. The feed comes from the
loopback feed server and the mail goes to the loopback SendGrid-like server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from peers.feed_server import FeedServer
from peers.sendgrid_server import API_KEY, SendGridServer

from tests.support.feeds import FEED_SERVER_TOML

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("crusader-mail")
READERS = [f"reader{n}@example.com" for n in range(1, 8)]
SECRET = "workflow-test-secret-key-0123456789"


def rss(count: int) -> bytes:
    """A WordPress-like feed of ``count`` weekly posts, newest first."""
    start = datetime(2026, 6, 5, 9, 0, tzinfo=UTC)
    items = []
    for n in range(count, 0, -1):
        title = f"Sales lesson {n}: follow up with client number {n}"
        body = " ".join(["Follow up with your clients and ask for referrals."] * 12)
        items.append(
            f"<item><title>{escape(title)}</title>"
            f"<link>https://blog.example/{n}/</link>"
            f'<guid isPermaLink="false">https://blog.example/?p={n}</guid>'
            f"<pubDate>{format_datetime(start + timedelta(days=7 * n))}</pubDate>"
            f"<category>Follow-Up</category>"
            f"<description>{escape(body)}</description>"
            f"<content:encoded><![CDATA[<p>{body}</p>]]></content:encoded></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        "<channel><title>Workflow Blog</title><link>https://blog.example/</link>"
        "<description>test</description>" + "".join(items) + "</channel></rss>"
    ).encode()


class Site:
    """A newsletter repository as the workflow sees it."""

    def __init__(self, root: Path, feeds: FeedServer, api: SendGridServer) -> None:
        self.root = root
        self.remote = root.parent / "remote.git"
        self.feeds = feeds
        self.api = api
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CRUSADER_MAIL_", "SENDGRID_"))
        }
        self.env.update(
            SENDGRID_API_KEY=API_KEY,
            CRUSADER_MAIL_SECRET_KEY=SECRET,
            PUSH_REMOTE=str(self.remote),
            BRANCH="main",
            GITHUB_RUN_ID="test",
        )
        self.env.pop("GITHUB_TOKEN", None)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def setup(self, posts: int) -> None:
        self.feeds.add("/feed.xml", rss(posts), etag=f"v{posts}")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True)
        self.root.mkdir()
        (self.root / "scripts").mkdir()
        shutil.copy(REPO / "scripts" / "commit-state.sh", self.root / "scripts")
        shutil.copy(REPO / ".gitignore", self.root / ".gitignore")
        (self.root / "crusader-mail.toml").write_text(
            f'feeds = ["{self.feeds.url("/feed.xml")}"]\n'
            f'templates_dir = "{REPO / "templates"}"\n'
            "[newsletter]\n"
            'name = "Workflow Blog"\nsite_url = "https://blog.example"\n'
            'from_email = "news@blog.example"\npostal_address = "1 Test Street"\n'
            "[sendgrid]\n"
            f'api_url = "{self.api.url}"\nbatch_size = 2\nbackoff_base = 0.01\n'
            "timeout = 10\n" + FEED_SERVER_TOML,
            encoding="utf-8",
        )
        readers = self.root / "readers.csv"
        readers.write_text("email,name\n" + "\n".join(f"{r},Reader" for r in READERS) + "\n")
        self.cli("subscribers", "import", str(readers))
        readers.unlink()
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
        self.git("remote", "add", "origin", str(self.remote))
        self.git("push", "-q", "origin", "main")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], cwd=self.root, env=self.env, capture_output=True, text=True
        )

    def commit_state(self) -> str:
        done = subprocess.run(
            ["bash", "scripts/commit-state.sh", "state", "subscribers"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def workflow_run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """The workflow's steps: run (its exit code kept), then always commit the state."""
        result = self.cli("run", "--summary", "summary.md", *extra)
        self.commit_state()
        return result

    def pushed_commits(self) -> int:
        return int(self.git("rev-list", "--count", "main", cwd=self.remote).strip())


@pytest.fixture
def site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    with SendGridServer() as api:
        built = Site(tmp_path / "site", feed_server, api)
        built.setup(posts=5)
        yield built


def issues_received(api: SendGridServer) -> dict[str, set[str]]:
    """Subject -> the addresses that received it."""
    got: dict[str, set[str]] = {}
    for delivery in api.deliveries:
        for address in delivery.recipients:
            got.setdefault(delivery.subject, set()).add(address.lower())
    return got


def test_weekly_runs_send_each_new_post_once(site: Site) -> None:
    first = site.workflow_run()
    assert first.returncode == 0, first.stderr
    assert "nothing new" in first.stdout
    assert site.api.deliveries == []
    assert site.pushed_commits() == 2  # the archive of the first run was committed
    archive = (site.root / "state" / "archive.jsonl").read_text(encoding="utf-8")
    assert archive.count("Sales lesson") == 5

    second = site.workflow_run()
    assert second.returncode == 0, second.stderr
    assert site.api.deliveries == []

    site.feeds.add("/feed.xml", rss(6), etag="v6")
    third = site.workflow_run()
    assert third.returncode == 0, third.stderr
    received = issues_received(site.api)
    assert list(received) == ["Sales lesson 6: follow up with client number 6"]
    counts = site.api.per_address()
    assert sorted(counts) == sorted(READERS)
    assert set(counts.values()) == {1}
    summary = (site.root / "summary.md").read_text(encoding="utf-8")
    assert "Sales lesson 6" in summary
    assert "@example.com" not in summary  # the job summary never names a reader
    assert "@example.com" not in third.stdout + third.stderr

    fourth = site.workflow_run()
    assert fourth.returncode == 0, fourth.stderr
    assert sum(site.api.per_address().values()) == len(READERS)  # nothing sent twice
    # What the runs committed is what a fresh checkout resumes from, and nothing run-time.
    committed = site.git("ls-tree", "-r", "--name-only", "main", cwd=site.remote).split()
    assert "state/archive.jsonl" in committed
    assert any(name.startswith("state/ledger/") for name in committed)
    assert not [name for name in committed if name.endswith((".lock", ".tmp"))]


def test_a_run_killed_mid_send_resumes_and_delivers_exactly_once(site: Site) -> None:
    assert site.workflow_run().returncode == 0  # installation: archive only
    site.feeds.add("/feed.xml", rss(6), etag="v6")
    site.api.delay = 0.4  # every mail send takes a while: time to kill the run mid-send
    running = subprocess.Popen(
        [str(CLI), "run"],
        cwd=site.root,
        env=site.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while site.api.accepted_requests < 1 or site.api.in_flight < 1:
        assert running.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run never reached its second batch"
        time.sleep(0.01)
    running.send_signal(signal.SIGKILL)
    running.wait(10)
    site.commit_state()  # if: always()
    delivered_before = sum(site.api.per_address().values())
    assert 0 < delivered_before < len(READERS)

    site.api.delay = 0.0
    again = site.workflow_run("--json")
    assert again.returncode == 0, again.stderr
    counts = site.api.per_address()
    assert sorted(counts) == sorted(READERS), "somebody who should have it was skipped"
    assert set(counts.values()) == {1}, "somebody got the issue twice"

    # The issue is finished: the next run sends nothing more.
    assert site.workflow_run().returncode == 0
    assert sum(site.api.per_address().values()) == len(READERS)


def test_state_commit_rebases_when_the_branch_moved(site: Site, tmp_path: Path) -> None:
    other = tmp_path / "other"
    site.git("clone", "-q", str(site.remote), str(other), cwd=tmp_path)
    (other / "NOTES.md").write_text("an editor pushed meanwhile\n")
    site.git("add", "NOTES.md", cwd=other)
    site.git(
        "-c", "user.name=e", "-c", "user.email=e@example.com", "commit", "-qm", "edit", cwd=other
    )
    site.git("push", "-q", "origin", "main", cwd=other)

    assert site.workflow_run().returncode == 0
    files = site.git("ls-tree", "-r", "--name-only", "main", cwd=site.remote)
    assert "NOTES.md" in files
    assert "state/archive.jsonl" in files


def test_commit_state_never_commits_run_time_files(tmp_path: Path) -> None:
    """Even in a repository without the project's .gitignore, locks and temp files stay out."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "state" / "ledger").mkdir(parents=True)
    for name in (
        "archive.jsonl",
        "archive.jsonl.lock",
        ".archive.jsonl.x1.tmp",
        "ledger/send.lock",
    ):
        (work / "state" / name).write_text("x\n")
    env = {**os.environ, "PUSH_REMOTE": str(remote), "BRANCH": "main"}
    env.pop("GITHUB_TOKEN", None)
    subprocess.run(
        ["bash", str(REPO / "scripts" / "commit-state.sh"), "state"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "main"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == ["state/archive.jsonl"]
