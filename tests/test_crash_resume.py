"""Crash and resume: a send killed with SIGKILL at random points, then run again, delivers the
issue to every active reader exactly once — the one batch in doubt aside.

The send runs in a child process (``python -m tests.test_crash_resume CONFIG``) against the
loopback SendGrid in this process. It is killed either from inside, by a hook at a chosen
moment (after the ledger's ``pending`` write; after SendGrid's 202 but before the ``accepted``
write — the window; after the ``accepted`` write), or from outside at a random moment while
requests are flowing. The kill points are drawn at random each run and named in the failure.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from peers.sendgrid_server import SendGridServer
from pydantic import SecretStr

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.engine import deliver
from crusader_mail.storage.files.ledger import Ledger, ledger_path
from crusader_mail.storage.files.subscribers import SubscriberList
from tests.support.sending import (
    ISSUE_ID,
    SECRET,
    ledgers,
    make_issue,
    make_readers,
    make_settings,
    reader_address,
    sendgrid,
)

REPO = Path(__file__).resolve().parent.parent
READERS = 1050
BATCH = 100
BATCHES = 11
CHOOSER = random.SystemRandom()


def _settings(tmp: Path, url: str, key: str) -> Any:
    return make_settings(
        tmp,
        sendgrid={
            "api_key": SecretStr(key),
            "api_url": url,
            "batch_size": BATCH,
            "max_retries": 0,
        },
    )


def _child(config_file: str) -> None:
    """The send in the child process; kills itself when the hook says so."""
    config = json.loads(Path(config_file).read_text())
    tmp = Path(config["tmp"])
    settings = _settings(tmp, config["url"], config["key"])
    clock = FixedClock(datetime.fromisoformat(config["now"]))
    readers = SubscriberList(settings.subscribers_dir, clock)
    kill_at = tuple(config["kill_at"]) if config["kill_at"] else None

    def hook(event: str, batch: int) -> None:
        if (event, batch) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    deliver(
        make_issue(),
        readers,
        ledgers(settings),
        sendgrid(settings, clock),
        settings,
        clock,
        hook=hook,
    )


def _run_child(
    tmp: Path, server: SendGridServer, clock: FixedClock, kill_at: tuple[str, int] | None
) -> subprocess.Popen[bytes]:
    config = tmp / "child.json"
    config.write_text(
        json.dumps(
            {
                "tmp": str(tmp),
                "url": server.url,
                "key": server.api_key,
                "now": clock.now().isoformat(),
                "kill_at": list(kill_at) if kill_at else None,
            }
        )
    )
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_crash_resume", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_killed(child: subprocess.Popen[bytes]) -> None:
    _out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()[-2000:]


def _kill_at_random(child: subprocess.Popen[bytes], server: SendGridServer, after: int) -> None:
    deadline = time.monotonic() + 60
    while server.accepted_requests < after and child.poll() is None:
        assert time.monotonic() < deadline, "the child never got going"
        time.sleep(0.001)
    time.sleep(CHOOSER.uniform(0, server.delay))
    child.send_signal(signal.SIGKILL)
    _out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the send finished before the kill: " + err.decode()


def _in_doubt(settings: Any) -> list[int]:
    return Ledger.load(ledger_path(settings.state_dir, ISSUE_ID), ISSUE_ID, SECRET).in_doubt_batches


def _check_resume(
    tmp: Path, server: SendGridServer, clock: FixedClock, settings: Any, label: str
) -> None:
    doubt = _in_doubt(settings)
    assert len(doubt) <= 1, f"{label}: {len(doubt)} batches in doubt"
    readers = SubscriberList(settings.subscribers_dir, clock)
    resumed = deliver(
        make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
    )
    everyone = {reader_address(i) for i in range(READERS)}
    doubtful = {
        reader_address(i)
        for b in doubt
        for i in range(b * BATCH, min((b + 1) * BATCH, READERS))  # the last batch is short
    }
    counts = server.per_address()
    assert resumed.uncertain == len(doubtful), label
    assert set(counts) <= everyone, label
    assert all(counts[a] == 1 for a in everyone - doubtful), f"{label}: not exactly once"
    assert all(counts[a] <= 1 for a in doubtful), f"{label}: in-doubt batch sent twice"
    # and --resend-uncertain makes sure the in-doubt readers have it
    deliver(
        make_issue(),
        readers,
        ledgers(settings),
        sendgrid(settings, clock),
        settings,
        clock,
        resend_uncertain=True,
    )
    counts = server.per_address()
    assert set(counts) == everyone, label
    assert all(counts[a] == 1 for a in everyone - doubtful), label
    assert _in_doubt(settings) == [], label


@pytest.mark.parametrize("event", ["pending", "accepted", "recorded"])
def test_killed_by_a_hook_at_a_random_batch_then_resumed(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer, event: str
) -> None:
    batch = CHOOSER.randrange(BATCHES)
    settings = _settings(tmp_path, sendgrid_server.url, sendgrid_server.api_key)
    make_readers(settings, clock, READERS)
    _wait_killed(_run_child(tmp_path, sendgrid_server, clock, (event, batch)))
    label = f"killed at {event} of batch {batch}"
    doubt = _in_doubt(settings)
    if event == "recorded":
        assert doubt == [], label
    else:
        assert doubt == [batch], label
    accepted = sendgrid_server.accepted_requests
    assert accepted == batch + (0 if event == "pending" else 1), label
    _check_resume(tmp_path, sendgrid_server, clock, settings, label)


@pytest.mark.parametrize("trial", [1, 2, 3])
def test_killed_at_a_random_moment_then_resumed(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer, trial: int
) -> None:
    settings = _settings(tmp_path, sendgrid_server.url, sendgrid_server.api_key)
    make_readers(settings, clock, READERS)
    sendgrid_server.delay = 0.02
    after = CHOOSER.randrange(1, BATCHES - 1)
    _kill_at_random(_run_child(tmp_path, sendgrid_server, clock, None), sendgrid_server, after)
    sendgrid_server.delay = 0.0
    _check_resume(
        tmp_path, sendgrid_server, clock, settings, f"trial {trial}: killed after {after} requests"
    )


def test_two_crashes_leave_one_batch_in_doubt_each(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = _settings(tmp_path, sendgrid_server.url, sendgrid_server.api_key)
    make_readers(settings, clock, READERS)
    first = CHOOSER.randrange(0, 5)
    _wait_killed(_run_child(tmp_path, sendgrid_server, clock, ("accepted", first)))
    second = CHOOSER.randrange(first + 1, BATCHES)
    _wait_killed(_run_child(tmp_path, sendgrid_server, clock, ("pending", second)))
    assert _in_doubt(settings) == [first, second]  # one per crash
    readers = SubscriberList(settings.subscribers_dir, clock)
    deliver(make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock)
    counts = sendgrid_server.per_address()
    in_second = {
        reader_address(i) for i in range(second * BATCH, min((second + 1) * BATCH, READERS))
    }
    everyone = {reader_address(i) for i in range(READERS)}
    assert all(counts[a] == 1 for a in everyone - in_second), (first, second)
    assert all(counts[a] == 0 for a in in_second), (first, second)


if __name__ == "__main__":
    _child(sys.argv[1])
