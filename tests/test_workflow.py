"""The weekly workflow, played step by step in temporary git repositories.

Each "workflow run" does what ``.github/workflows/newsletter.yml`` does: ``crusader-mail run
--checkpoint "bash scripts/commit-state.sh state subscribers"`` in a real subprocess (the
installed console script), then ``scripts/commit-state.sh state subscribers`` pushing to a bare
repository that stands in for GitHub. A run whose runner was lost is followed by a run in a
fresh clone (:meth:`Site.fresh_checkout`), as the next Action starts from the remote. The feed
comes from the loopback feed server and the mail goes to the loopback SendGrid-like server
(with ``subscription_tracking``: the repository-only shape's one-click is SendGrid's).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest
from peers.feed_server import FeedServer
from peers.sendgrid_server import API_KEY, SendGridServer

from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.rows import format_row
from tests.support.feeds import FEED_SERVER_TOML

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("crusader-mail")
READERS = [f"reader{n}@example.com" for n in range(1, 8)]
SECRET = "workflow-test-secret-key-0123456789"
CHECKPOINT = "bash scripts/commit-state.sh state subscribers"
ISSUE_6 = "Sales lesson 6: follow up with client number 6"


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
            # git runs `crusader-mail merge-driver`, as on the runner where it is installed
            PATH=f"{CLI.parent}{os.pathsep}{os.environ.get('PATH', '')}",
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
        shutil.copy(REPO / ".gitattributes", self.root / ".gitattributes")
        (self.root / "crusader-mail.toml").write_text(
            f'feeds = ["{self.feeds.url("/feed.xml")}"]\n'
            f'templates_dir = "{REPO / "templates"}"\n'
            "[newsletter]\n"
            'name = "Workflow Blog"\nsite_url = "https://blog.example"\n'
            'from_email = "news@blog.example"\npostal_address = "1 Test Street"\n'
            "[sendgrid]\n"
            f'api_url = "{self.api.url}"\nbatch_size = 2\nbackoff_base = 0.01\n'
            "timeout = 10\nsubscription_tracking = true\n" + FEED_SERVER_TOML,
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

    def commit_state(self, *more: str) -> str:
        """``scripts/commit-state.sh state subscribers`` (and ``more`` folders)."""
        done = subprocess.run(
            ["bash", "scripts/commit-state.sh", "state", "subscribers", *more],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def workflow_run(
        self, *extra: str, more: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """The workflow's steps: run (its exit code kept), then always commit the state (and
        the ``more`` folders: the workflow commits ``archive`` and ``notes`` too)."""
        result = self.cli("run", "--summary", "summary.md", "--checkpoint", CHECKPOINT, *extra)
        self.commit_state(*more)
        return result

    def pushed_commits(self) -> int:
        return int(self.git("rev-list", "--count", "main", cwd=self.remote).strip())

    def pushed(self, path: str) -> str:
        """A file as the remote's main branch holds it ("" when it is not there)."""
        done = subprocess.run(
            ["git", "show", f"main:{path}"], cwd=self.remote, capture_output=True, text=True
        )
        return done.stdout if done.returncode == 0 else ""

    def fresh_checkout(self, name: str) -> Site:
        """The next Action's checkout: a clone of the remote (the old runner is gone)."""
        fresh = Site.__new__(Site)
        fresh.__dict__.update(self.__dict__)
        fresh.root = self.root.parent / name
        self.git("clone", "-q", str(self.remote), str(fresh.root), cwd=self.root.parent)
        return fresh

    def pushed_ledger(self, subject: str) -> bool:
        """Did the ledger of the issue with this subject reach the remote?"""
        issues = [json.loads(line) for line in self.pushed("state/issues.jsonl").splitlines()]
        ids = [i["issue_id"] for i in issues if i.get("subject") == subject]
        names = self.git("ls-tree", "-r", "--name-only", "main", cwd=self.remote).split()
        return any(f"state/ledger/{issue}.jsonl" in names for issue in ids)

    def editor_push(self, change: Callable[[Path], None], name: str = "editor") -> None:
        """An editor edits the list in their own clone and pushes it."""
        clone = self.root.parent / name
        if not clone.exists():
            self.git("clone", "-q", str(self.remote), str(clone), cwd=self.root.parent)
        self.git("pull", "-q", "--rebase", "origin", "main", cwd=clone)
        change(clone / "subscribers" / "subscribers.csv")
        self.git("add", "-A", cwd=clone)
        self.git(
            "-c", "user.name=e", "-c", "user.email=e@example.com", "commit", "-qm", "edit",
            cwd=clone,
        )  # fmt: skip
        self.git("push", "-q", "origin", "main", cwd=clone)


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
    assert not [name for name in committed if ".subscribers-index/" in name]  # the list's index
    assert (site.root / "subscribers" / ".subscribers-index" / "list.json").is_file()


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


# --- a failed send fails the job --------------------------------------------------------------


@pytest.mark.parametrize(("command", "status"), [("run", 500), ("send", 400)])
def test_a_failed_send_exits_1_and_the_next_run_delivers_once(
    site: Site, command: str, status: int
) -> None:
    assert site.workflow_run().returncode == 0  # installation: archive only
    site.feeds.add("/feed.xml", rss(6), etag="v6")
    site.api.fail(status, count=50, paths="/v3/mail/send")
    failed = site.cli(command, "--checkpoint", CHECKPOINT)
    site.commit_state()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.count("crusader-mail: error:") == 1
    assert f"HTTP {status}" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert site.api.deliveries == []
    # the issue record went out before the first request, the ledger after the failure
    assert '"status":"sending"' in site.pushed("state/issues.jsonl")
    assert any(
        name.startswith("state/ledger/") and name.endswith(".jsonl")
        for name in site.git("ls-tree", "-r", "--name-only", "main", cwd=site.remote).split()
    )

    site.api.clear_faults()
    again = site.workflow_run()
    assert again.returncode == 0, again.stderr
    counts = site.api.per_address()
    assert sorted(counts) == sorted(READERS)
    assert set(counts.values()) == {1}
    assert '"status":"sent"' in site.pushed("state/issues.jsonl")


def test_a_failed_checkpoint_sends_nothing_and_leaves_no_issue_in_doubt(site: Site) -> None:
    assert site.workflow_run().returncode == 0
    site.feeds.add("/feed.xml", rss(6), etag="v6")
    failed = site.cli("run", "--checkpoint", "false")
    assert failed.returncode == 1
    [error] = [line for line in failed.stderr.splitlines() if "error:" in line]
    assert "--checkpoint 'false' failed (exit 1)" in error
    assert "nothing was sent" in error
    assert site.api.mail_requests() == []
    issues = (site.root / "state" / "issues.jsonl").read_text(encoding="utf-8")
    assert '"status":"composed"' in issues
    assert '"sending"' not in issues
    site.commit_state()
    again = site.workflow_run()
    assert again.returncode == 0, again.stderr
    assert set(site.api.per_address().values()) == {1}
    assert sorted(site.api.per_address()) == sorted(READERS)


# --- an editor's push during a run ------------------------------------------------------------


def reader_row(email: str, name: str, status: Status, when: datetime) -> str:
    left = status is not Status.ACTIVE
    return format_row(
        Subscriber(
            email=email,
            name=name,
            status=status,
            subscribed_at=datetime(2026, 1, 1, tzinfo=UTC),
            subscribed_via=Source.CLI,
            confirmed_at=datetime(2026, 1, 1, tzinfo=UTC),
            confirmed_via=Source.CLI,
            left_at=when if left else None,
            left_via=Source.CLI if left else None,
            updated_at=when,
        )
    )


def edit_rows(path: Path, rows: dict[str, str | None]) -> None:
    """Replace (or add, or with ``None`` drop) rows by address, keeping the file sorted."""
    lines = path.read_text(encoding="utf-8").splitlines()
    head, body = lines[:2], {line.split(",", 1)[0]: line for line in lines[2:]}
    for email, row in rows.items():
        if row is None:
            body.pop(email, None)
        else:
            body[email] = row
    path.write_text("\n".join([*head, *(body[k] for k in sorted(body))]) + "\n", encoding="utf-8")


def test_an_editor_push_to_the_list_during_a_run_merges_and_nothing_is_sent_twice(
    site: Site,
) -> None:
    assert site.workflow_run().returncode == 0
    site.feeds.add("/feed.xml", rss(6), etag="v6")
    now = datetime.now(UTC).replace(microsecond=0)
    # The run's own change to the list: reader3 left through SendGrid's link (suppression sync).
    site.api.add_suppressions("unsubscribes", ["reader3@example.com"])
    # Meanwhile (the run's checkout is older) an editor adds a reader on the very next line and
    # renames reader4: a line merge of the two would conflict.
    site.editor_push(
        lambda path: edit_rows(
            path,
            {
                "reader3b@example.com": reader_row(
                    "reader3b@example.com", "New", Status.ACTIVE, now
                ),
                "reader4@example.com": reader_row(
                    "reader4@example.com", "Renamed", Status.ACTIVE, now
                ),
            },
        )
    )
    # ... and pushes again while the issue goes out: reader7 asked the editor to remove them.
    site.api.delay = 0.2
    during = threading.Thread(
        target=_push_when_sending,
        args=(site, {"reader7@example.com": reader_row("reader7@example.com", "Reader", Status.UNSUBSCRIBED, now)}),
    )  # fmt: skip
    during.start()
    result = site.workflow_run()
    during.join(30)
    assert result.returncode == 0, result.stderr
    assert "rebasing" in result.stderr  # the checkpoint's push met the editor's commit
    assert "conflict" not in result.stderr

    pushed = site.pushed("subscribers/subscribers.csv")
    rows = {line.split(",")[0]: line.split(",") for line in pushed.splitlines()[2:]}
    assert rows["reader3@example.com"][2] == "unsubscribed"  # the run's change
    assert rows["reader3@example.com"][8] == "sendgrid"
    assert rows["reader3b@example.com"][2] == "active"  # the editor's changes
    assert rows["reader4@example.com"][1] == "Renamed"
    assert rows["reader7@example.com"][2] == "unsubscribed"
    assert "<<<<<<<" not in pushed
    assert list(rows) == sorted(rows)
    assert '"status":"sent"' in site.pushed("state/issues.jsonl")
    ledgers = [
        name
        for name in site.git("ls-tree", "-r", "--name-only", "main", cwd=site.remote).split()
        if name.startswith("state/ledger/")
    ]
    assert ledgers
    # The merged list is what the send read: the editor's new reader got the issue, reader3 not.
    expected = {*READERS, "reader3b@example.com"} - {"reader3@example.com"}
    assert dict(site.api.per_address()) == dict.fromkeys(sorted(expected), 1)

    # The next run (a fresh checkout, as the next Action) sends nothing twice.
    site.api.delay = 0.0
    nxt = site.fresh_checkout("next")
    again = nxt.workflow_run()
    assert again.returncode == 0, again.stderr
    assert dict(site.api.per_address()) == dict.fromkeys(sorted(expected), 1)


def _push_when_sending(site: Site, rows: dict[str, str | None]) -> None:
    deadline = time.monotonic() + 30
    while site.api.in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    site.editor_push(lambda path: edit_rows(path, rows))


# --- a kill around the checkpoint -------------------------------------------------------------

HOLD = """#!/usr/bin/env bash
# The workflow's checkpoint, holding still before or after its push so the test can kill it.
set -euo pipefail
if [ "$HOLD" = before ]; then touch "$MARK"; sleep 60; fi
bash scripts/commit-state.sh state subscribers
if [ "$HOLD" = after ]; then touch "$MARK"; sleep 60; fi
"""


def _killed_run(site: Site, hold: str) -> None:
    """``crusader-mail run`` killed (SIGKILL, with its checkpoint) at ``hold``: "before" or
    "after" the checkpoint's push, or "mid-send" (a batch accepted, the next one in flight)."""
    mark = site.root.parent / f"held-{hold}"
    env = {**site.env, "HOLD": hold, "MARK": str(mark)}
    checkpoint = CHECKPOINT
    if hold in ("before", "after"):
        (site.root.parent / "hold.sh").write_text(HOLD, encoding="utf-8")
        checkpoint = f"bash {site.root.parent / 'hold.sh'}"
    else:
        site.api.delay = 0.4
    running = subprocess.Popen(
        [str(CLI), "run", "--checkpoint", checkpoint],
        cwd=site.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the checkpoint too
    )
    deadline = time.monotonic() + 30
    while not (
        mark.exists() if hold != "mid-send" else site.api.accepted_requests and site.api.in_flight
    ):
        assert running.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, f"the run never got {hold}"
        time.sleep(0.01)
    os.killpg(running.pid, signal.SIGKILL)
    running.wait(10)
    while site.api.in_flight:  # the request the run was waiting for still lands
        time.sleep(0.01)
    site.api.delay = 0.0


@pytest.mark.parametrize(
    ("hold", "commit_ran", "in_doubt"),
    [
        ("before", False, False),  # nothing reached the remote: the next run starts afresh
        ("before", True, True),  # "sending" pushed after the kill, no ledger: in doubt
        ("after", False, True),  # the checkpoint pushed "sending", no ledger: in doubt
        ("mid-send", False, True),  # some got it, the ledger never reached the remote
        ("mid-send", True, False),  # the ledger was pushed: the next run resumes
    ],
)
def test_a_kill_around_the_checkpoint_never_sends_an_issue_twice(
    site: Site, hold: str, commit_ran: bool, in_doubt: bool
) -> None:
    """commit_ran: the workflow's always() commit step ran after the kill (a cancelled job);
    without it the runner was lost and only what the checkpoint pushed survives."""
    assert site.workflow_run().returncode == 0
    site.feeds.add("/feed.xml", rss(6), etag="v6")
    _killed_run(site, hold)
    if commit_ran:
        site.commit_state()
    before = site.api.per_address()
    assert ('"status":"sending"' in site.pushed("state/issues.jsonl")) is (
        hold != "before" or commit_ran
    )
    assert site.pushed_ledger(ISSUE_6) is (hold == "mid-send" and commit_ran)

    nxt = site.fresh_checkout("next")
    result = nxt.workflow_run()
    counts = site.api.per_address()
    assert all(n == 1 for n in counts.values()), "somebody got the issue twice"
    if in_doubt:
        assert result.returncode == 1
        assert "in doubt and nothing was sent" in result.stderr
        assert counts == before
        assert "in doubt" in (nxt.root / "summary.md").read_text(encoding="utf-8")
        if hold == "mid-send":
            return  # some did get it: only the editor, after checking SendGrid, may resend
        resent = site.fresh_checkout("resent").workflow_run("--resend-uncertain")
        assert resent.returncode == 0, resent.stderr
    else:
        assert result.returncode == 0, result.stderr
    counts = site.api.per_address()
    assert set(counts.values()) == {1}, "somebody got the issue twice"
    missed = set(READERS) - set(counts)
    if hold == "mid-send" and not in_doubt:
        # resumed from the pushed ledger: the batches in flight at the kill (up to
        # sendgrid.concurrency) are in doubt; the one the peer was answering landed, a batch
        # recorded pending whose request never left is skipped, never guessed at
        summary = (nxt.root / "summary.md").read_text(encoding="utf-8")
        found = re.search(r"in doubt: (\d+)", summary)
        assert len(missed) <= (int(found[1]) if found else 0), summary
        return
    assert not missed, "somebody who should have it was skipped"


# --- the inbox workflow -------------------------------------------------------------------------

SUBSCRIBE = """\
From: "Nina New" <nina@reader.example>
To: news+subscribe@blog.example
Subject: subscribe
Date: Mon, 23 Nov 2026 08:00:00 +0000
Message-ID: <inbox-workflow-1@reader.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Sign me up please.
"""


def test_the_inbox_step_syncs_sendgrids_unsubscribes_first_and_commits_the_list(
    site: Site,
) -> None:
    """inbox.yml's steps (the mailbox here is a Maildir: IMAP is tested in test_imap.py): a
    reader who used SendGrid's one-click link is out, a new reader gets their confirmation at
    once, and the list is pushed."""
    site.feeds.add("/feed.xml", rss(6), etag="v6")
    assert site.workflow_run("--include-backlog", "1").returncode == 0
    [delivery] = site.api.to("reader2@example.com")
    assert delivery.unsubscribe_link is not None
    assert "one click" in delivery.rendered()
    assert httpx.post(delivery.unsubscribe_link, content=b"List-Unsubscribe=One-Click").is_success

    mailbox = site.root.parent / "Maildir"
    for part in ("cur", "new", "tmp"):
        (mailbox / part).mkdir(parents=True)
    (mailbox / "new" / "1.eml").write_text(SUBSCRIBE, encoding="utf-8")
    handled = site.cli("inbox", "process", str(mailbox), "--sync-suppressions", "--json")
    assert handled.returncode == 0, handled.stderr
    report = json.loads(handled.stdout)
    assert report["suppressions"]["unsubscribed"] == 1
    assert [a["command"] for a in report["actions"]] == ["subscribe"]
    log = [(entry.method, entry.path) for entry in site.api.log]
    synced = max(i for i, (method, _path) in enumerate(log) if method == "GET")
    [confirmation] = site.api.to("nina@reader.example")
    assert "confirm" in confirmation.subject.lower()
    assert synced < len(log) - 1  # the sync came before the confirmation's request
    assert log[-1] == ("POST", "/v3/mail/send")
    site.commit_state()
    listed = site.pushed("subscribers/subscribers.csv")
    assert "\nreader2@example.com,Reader,unsubscribed," in listed
    assert "\nnina@reader.example,Nina New,pending," in listed


def test_commit_state_fails_on_a_conflict_no_driver_resolves(tmp_path: Path) -> None:
    """The state could not be pushed: exit 1 naming the file, and no rebase left half done."""
    remote, work, other = tmp_path / "remote.git", tmp_path / "work", tmp_path / "other"
    env = {**os.environ, "PUSH_REMOTE": str(remote), "BRANCH": "main"}
    env.pop("GITHUB_TOKEN", None)

    def git(cwd: Path, *args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
        )

    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "state").mkdir()
    (work / "state" / "issues.jsonl").write_text("header\n", encoding="utf-8")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "init")
    git(work, "push", "-q", str(remote), "main")
    git(tmp_path, "clone", "-q", str(remote), str(other))
    (other / "state" / "issues.jsonl").write_text("header\nan editor's line\n", encoding="utf-8")
    git(other, "commit", "-qam", "edit")
    git(other, "push", "-q", "origin", "main")
    (work / "state" / "issues.jsonl").write_text("header\nthe run's line\n", encoding="utf-8")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "commit-state.sh"), "state"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "conflict in state/issues.jsonl" in done.stderr
    assert not (work / ".git" / "rebase-merge").exists()
    assert "the run's line" in (work / "state" / "issues.jsonl").read_text(encoding="utf-8")


def test_a_held_issue_approved_by_a_dispatch_pushes_its_page_and_the_emptied_note(
    site: Site,
) -> None:
    """``approval = true`` and ``archive_url`` set, a note in notes/next.md: the scheduled run
    holds the issue and pushes nothing but its record; the dispatch with approve (in a fresh
    checkout, as a new Action) sends it, and the archive page and the emptied note reach the
    repository with the state."""
    config = site.root / "crusader-mail.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[newsletter]\n", '[newsletter]\narchive_url = "https://news.blog.example/"\n'
        )
        + "[cadence]\napproval = true\n",
        encoding="utf-8",
    )
    (site.root / "notes").mkdir()
    (site.root / "notes" / "next.md").write_text("Back from *holiday*.\n", encoding="utf-8")
    site.git("add", "-A")
    site.git("-c", "user.name=e", "-c", "user.email=e@example.com", "commit", "-qm", "note")
    site.git("push", "-q", "origin", "main")
    published = ("archive", "notes")
    assert site.workflow_run(more=published).returncode == 0  # the first run: backlog only
    site.feeds.add("/feed.xml", rss(6), etag="v6")
    held = site.workflow_run(more=published)
    assert held.returncode == 0, held.stderr
    assert site.api.deliveries == []
    [record] = [json.loads(line) for line in site.pushed("state/issues.jsonl").splitlines()[1:]]
    assert record["status"] == "awaiting_approval"
    assert record["note"] == "Back from *holiday*."
    assert f"approve = `{record['issue_id']}`" in (site.root / "summary.md").read_text()
    assert site.pushed("notes/next.md") == "Back from *holiday*.\n"
    assert site.pushed("archive/index.html") == ""

    dispatch = site.fresh_checkout("dispatch")
    approved = dispatch.workflow_run("--approve", record["issue_id"], more=published)
    assert approved.returncode == 0, approved.stderr
    assert issues_received(site.api) == {ISSUE_6: set(READERS)}
    assert "<em>holiday</em>" in site.api.deliveries[0].rendered()
    assert site.pushed("notes/next.md") == ""
    page = site.pushed(f"archive/{record['issue_id']}.html")
    assert "<em>holiday</em>" in page
    assert f"https://news.blog.example/{record['issue_id']}.html" in site.pushed(
        "archive/index.html"
    )
    assert "@example.com" not in page + site.pushed("archive/feed.xml")
