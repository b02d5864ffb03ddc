"""Holding issues for approval (``[cadence] approval = true``) through the real pipeline, with
the loopback feed and SendGrid servers: the scheduled run composes, previews (a made-up reader)
and sends nothing; ``run --approve ISSUE_ID`` sends exactly that issue; any other id refuses
the run with exit 2 and one line; per_post holds each issue; a failed checkpoint puts the issue
back to waiting; an approved issue interrupted mid-send is resumed without a new approval.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.feed_server import FeedServer
from peers.sendgrid_server import API_KEY, SendGridServer

from crusader_mail.errors import ConfigError
from tests.support.sending import EMAIL_RE
from tests.test_pipeline import ACTIVE, CLI, SECRET, Site

APPROVAL = "[cadence]\napproval = true\n"
HELD = "awaiting_approval"


@pytest.fixture
def site(tmp_path: Path, feed_server: FeedServer) -> Iterator[Site]:
    with SendGridServer() as api:
        made = Site(tmp_path / "site", feed_server, api)
        made.configure(APPROVAL)
        yield made


def held_run(site: Site, *args: str) -> dict[str, Any]:
    result = site.cli("run", "--json", *args)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def real_cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script (exit codes and stderr as a user sees them)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(site.root),
           "SENDGRID_API_KEY": API_KEY, "CRUSADER_MAIL_SECRET_KEY": SECRET}  # fmt: skip
    return subprocess.run(
        [str(CLI), "--config", str(site.config), *args],
        cwd=site.root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_scheduled_run_holds_the_issue_and_previews_it_with_a_sample_reader(
    site: Site,
) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    summary = site.root / "summary.md"
    report = held_run(site, "--summary", str(summary))
    [issue] = report["issues"]
    issue_id = issue["issue"]["issue_id"]
    assert issue["held"] is True
    assert issue["send"] is None
    assert site.api.mail_requests() == []
    assert site.statuses() == {issue_id: HELD}
    preview = site.root / "preview"
    assert issue["preview"] == str(preview)
    html = (preview / "newsletter.html").read_text(encoding="utf-8")
    text = (preview / "newsletter.txt").read_text(encoding="utf-8")
    for part in (html, text):
        assert "reader@preview.invalid" in part
        assert "[[" not in part
    shown = summary.read_text(encoding="utf-8")
    assert f"approve = `{issue_id}`" in shown
    assert "(held for approval)" in shown
    assert "reader@preview.invalid" in shown  # the text part, for the sample reader
    every = "\n".join(path.read_text(encoding="utf-8") for path in preview.iterdir())
    for address in (*ACTIVE, *EMAIL_RE.findall(shown)):
        if not address.endswith(".invalid") and not address.startswith("news+"):
            assert address not in every + shown, address


def test_nothing_new_is_composed_while_an_issue_awaits_approval(site: Site) -> None:
    site.install(hidden=2)
    site.publish(hidden=1)
    [first] = held_run(site)["issues"]
    site.publish(hidden=0)
    again = held_run(site)
    assert [i["issue"]["issue_id"] for i in again["issues"]] == [first["issue"]["issue_id"]]
    assert again["issues"][0]["held"] is True
    assert list(site.statuses().values()) == [HELD]
    assert site.api.mail_requests() == []


def test_approving_sends_exactly_that_issue_once(site: Site) -> None:
    site.install(hidden=2)
    site.publish(hidden=1)
    [held] = held_run(site)["issues"]
    issue_id = held["issue"]["issue_id"]
    site.publish(hidden=0)  # a newer post: not in the approved issue, not sent with it
    done = held_run(site, "--approve", issue_id)
    [sent] = done["issues"]
    assert sent["issue"]["issue_id"] == issue_id
    assert sent["send"]["delivered"] == len(ACTIVE)
    assert sent["issue"]["posts"] == held["issue"]["posts"]
    assert site.statuses() == {issue_id: "sent"}
    assert {subject: dict(counts) for subject, counts in site.received().items()} == {
        held["issue"]["subject"]: dict.fromkeys(ACTIVE, 1)
    }
    again = real_cli(site, "run", "--approve", issue_id)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"crusader-mail: error: --approve {issue_id}: that issue was sent already; nothing sent"
    ]
    [next_one] = held_run(site)["issues"]  # the newer post: held in its turn
    assert next_one["held"] is True
    assert sum(site.api.per_address().values()) == len(ACTIVE)


def test_a_wrong_id_refuses_the_run_before_it_changes_anything(site: Site) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    [held] = held_run(site)["issues"]
    before = site.state_bytes()
    calls = len(site.api.log)
    refused = real_cli(site, "run", "--approve", "2026-01-01-00000000")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "crusader-mail: error: --approve 2026-01-01-00000000: no issue with this id awaits "
        f"approval (awaiting: {held['issue']['issue_id']}); nothing sent"
    ]
    assert site.state_bytes() == before
    assert len(site.api.log) == calls  # not even the suppressions


def test_per_post_holds_each_issue_and_each_approval_sends_only_its_own(site: Site) -> None:
    site.configure('mode = "per_post"\n')  # into the [cadence] table the fixture added
    site.install(hidden=3)
    site.publish(hidden=0)
    report = held_run(site)
    ids = [issue["issue"]["issue_id"] for issue in report["issues"]]
    assert len(ids) == 3
    assert [issue["preview"] for issue in report["issues"]] == [
        str(site.root / "preview"),
        str(site.root / "preview" / "issue-2"),
        str(site.root / "preview" / "issue-3"),
    ]
    assert set(site.statuses().values()) == {HELD}
    one = held_run(site, "--approve", ids[1])
    assert [i["issue"]["issue_id"] for i in one["issues"]] == [ids[1]]
    assert site.statuses() == {ids[0]: HELD, ids[1]: "sent", ids[2]: HELD}
    both = held_run(site, "--approve", f"{ids[2]}, {ids[0]}")
    assert [i["issue"]["issue_id"] for i in both["issues"]] == [ids[0], ids[2]]  # oldest first
    assert set(site.statuses().values()) == {"sent"}
    received = site.received()
    assert len(received) == 3
    assert all(counts == dict.fromkeys(ACTIVE, 1) for counts in received.values())


def test_a_failed_checkpoint_puts_the_approved_issue_back_to_waiting(site: Site) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    [held] = held_run(site)["issues"]
    issue_id = held["issue"]["issue_id"]
    failed = site.cli("run", "--approve", issue_id, "--checkpoint", "false")
    assert failed.exit_code == 1
    assert site.statuses() == {issue_id: HELD}
    assert site.api.mail_requests() == []
    assert held_run(site, "--approve", issue_id)["issues"][0]["send"]["delivered"] == len(ACTIVE)


def test_an_approved_issue_interrupted_mid_send_resumes_without_a_new_approval(
    site: Site,
) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    [held] = held_run(site)["issues"]
    issue_id = held["issue"]["issue_id"]
    site.api.fail(400, paths="/v3/mail/send")
    assert site.cli("run", "--approve", issue_id).exit_code == 1
    assert site.statuses() == {issue_id: "sending"}
    resumed = held_run(site)  # the scheduled run: no --approve
    [issue] = resumed["issues"]
    assert (issue["issue"]["issue_id"], issue["issue"]["resumed"]) == (issue_id, True)
    # batches in flight beside the refused one (sendgrid.concurrency) may have gone out
    send = issue["send"]
    assert send["delivered"] + send["skipped"]["already_delivered"] == len(ACTIVE)
    assert site.statuses() == {issue_id: "sent"}
    assert site.api.per_address() == dict.fromkeys(ACTIVE, 1)


def test_send_refuses_to_skip_the_approval(site: Site) -> None:
    site.install(hidden=1)
    site.publish(hidden=0)
    refused = site.cli("send")
    assert isinstance(refused.exception, ConfigError)
    assert "cadence.approval is on" in str(refused.exception)
    assert site.api.mail_requests() == []
    dry = site.cli("run", "--dry-run", "--json", secrets=False)
    assert dry.exit_code == 0, dry.output
    assert (
        "cadence.approval is on: a real run holds new issues for approval"
        in json.loads(dry.stdout)["problems"]
    )


def test_with_approval_turned_off_a_held_issue_still_needs_its_approval(site: Site) -> None:
    site.install(hidden=2)
    site.publish(hidden=1)
    [held] = held_run(site)["issues"]
    issue_id = held["issue"]["issue_id"]
    site.config.write_text(
        site.config.read_text(encoding="utf-8").replace("approval = true", "approval = false"),
        encoding="utf-8",
    )
    site.publish(hidden=0)
    report = held_run(site)
    [sent] = report["issues"]  # only the newer post: the held one keeps its own
    assert sent["issue"]["issue_id"] != issue_id
    assert not set(sent["issue"]["posts"]) & set(held["issue"]["posts"])
    assert (
        f"issue {issue_id} awaits approval: `crusader-mail run --approve {issue_id}` sends it"
        in (report["problems"])
    )
    assert site.statuses()[issue_id] == HELD


def test_a_test_send_shows_the_issue_that_awaits_approval(site: Site) -> None:
    site.install(hidden=2)
    site.publish(hidden=1)
    [held] = held_run(site)["issues"]
    site.publish(hidden=0)  # newer: the held issue, not this one, is what a test send shows
    result = site.cli("send", "--to", "editor@bizcrusader.example")
    assert result.exit_code == 0, result.output
    [delivery] = site.api.deliveries
    assert delivery.to == ("editor@bizcrusader.example",)
    assert delivery.subject == "[TEST] " + held["issue"]["subject"]
    assert site.statuses() == {held["issue"]["issue_id"]: HELD}
