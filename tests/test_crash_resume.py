"""Crash and resume: a send killed with SIGKILL at random points, then run again, delivers the
issue to every active reader exactly once — the batches in doubt aside: at most
``sendgrid.concurrency`` of them (the requests that were in flight), one when requests go one
at a time. Every test runs with concurrency 1 and 3.

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
CONCURRENCY = [1, 3]
CHOOSER = random.SystemRandom()


def _settings(tmp: Path, url: str, key: str, concurrency: int) -> Any:
    return make_settings(
        tmp,
        sendgrid={
            "api_key": SecretStr(key),
            "api_url": url,
            "batch_size": BATCH,
            "max_retries": 0,
            "concurrency": concurrency,
        },
    )


def _child(config_file: str) -> None:
    """The send in the child process; kills itself when the hook says so."""
    config = json.loads(Path(config_file).read_text())
    tmp = Path(config["tmp"])
    settings = _settings(tmp, config["url"], config["key"], config["concurrency"])
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
    tmp: Path,
    server: SendGridServer,
    clock: FixedClock,
    kill_at: tuple[str, int] | None,
    concurrency: int,
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
                "concurrency": concurrency,
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


def _ledger(settings: Any) -> Ledger:
    return Ledger.load(ledger_path(settings.state_dir, ISSUE_ID), ISSUE_ID, SECRET)


def _in_doubt(settings: Any) -> list[int]:
    return _ledger(settings).in_doubt_batches


def _readers_of(settings: Any, batches: list[int]) -> set[str]:
    """The addresses the ledger's ``pending`` records of ``batches`` name (by their hashes)."""
    ledger = _ledger(settings)
    hashes: set[int] = set()
    for line in ledger_path(settings.state_dir, ISSUE_ID).read_text().splitlines()[1:]:
        record = json.loads(line)
        if record["state"] == "pending" and record["batch"] in batches:
            hashes |= {int(value, 16) for value in record["readers"]}
    everyone = (reader_address(i) for i in range(READERS))
    return {address for address in everyone if ledger.reader_hash(address) in hashes}


def _check_resume(
    server: SendGridServer, clock: FixedClock, settings: Any, concurrency: int, label: str
) -> None:
    doubt = _in_doubt(settings)
    assert len(doubt) <= concurrency, f"{label}: {len(doubt)} batches in doubt"
    readers = SubscriberList(settings.subscribers_dir, clock)
    resumed = deliver(
        make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
    )
    everyone = {reader_address(i) for i in range(READERS)}
    doubtful = _readers_of(settings, doubt)
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


@pytest.mark.parametrize("concurrency", CONCURRENCY)
@pytest.mark.parametrize("event", ["pending", "accepted", "recorded"])
def test_killed_by_a_hook_at_a_random_batch_then_resumed(
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    event: str,
    concurrency: int,
) -> None:
    batch = CHOOSER.randrange(BATCHES)
    settings = _settings(tmp_path, sendgrid_server.url, sendgrid_server.api_key, concurrency)
    make_readers(settings, clock, READERS)
    _wait_killed(_run_child(tmp_path, sendgrid_server, clock, (event, batch), concurrency))
    label = f"concurrency {concurrency}, killed at {event} of batch {batch}"
    doubt = _in_doubt(settings)
    if event == "recorded":  # the batch just recorded was one of those in flight
        assert batch not in doubt, label
        assert len(doubt) <= concurrency - 1, label
    else:
        assert batch in doubt, label
        assert len(doubt) <= concurrency, label
    if concurrency == 1:  # one request at a time: exactly this batch, and those before
        assert doubt == ([] if event == "recorded" else [batch]), label
        accepted = sendgrid_server.accepted_requests
        assert accepted == batch + (0 if event == "pending" else 1), label
    _check_resume(sendgrid_server, clock, settings, concurrency, label)


@pytest.mark.parametrize("concurrency", CONCURRENCY)
@pytest.mark.parametrize("trial", [1, 2])
def test_killed_at_a_random_moment_then_resumed(
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    trial: int,
    concurrency: int,
) -> None:
    settings = _settings(tmp_path, sendgrid_server.url, sendgrid_server.api_key, concurrency)
    make_readers(settings, clock, READERS)
    sendgrid_server.delay = 0.02
    after = CHOOSER.randrange(1, BATCHES - 1 - concurrency)
    child = _run_child(tmp_path, sendgrid_server, clock, None, concurrency)
    _kill_at_random(child, sendgrid_server, after)
    sendgrid_server.delay = 0.0
    label = f"concurrency {concurrency}, trial {trial}: killed after {after} requests"
    _check_resume(sendgrid_server, clock, settings, concurrency, label)


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_two_crashes_leave_their_batches_in_doubt(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer, concurrency: int
) -> None:
    settings = _settings(tmp_path, sendgrid_server.url, sendgrid_server.api_key, concurrency)
    make_readers(settings, clock, READERS)
    first = CHOOSER.randrange(0, 5)
    _wait_killed(_run_child(tmp_path, sendgrid_server, clock, ("accepted", first), concurrency))
    after_first = _in_doubt(settings)
    assert first in after_first
    assert len(after_first) <= concurrency
    # the second run numbers its batches on from the first's (whose batches were all full:
    # with requests in flight, later ones may have landed before the one killed at)
    start = _ledger(settings).next_batch
    second = start + CHOOSER.randrange(0, min(3, BATCHES - start))
    _wait_killed(_run_child(tmp_path, sendgrid_server, clock, ("pending", second), concurrency))
    doubt = _in_doubt(settings)
    assert set(after_first) <= set(doubt)
    assert second in doubt
    assert len(doubt) <= 2 * concurrency  # one crash's worth each
    in_second = _readers_of(settings, [second])  # killed before its request: never sent
    doubtful = _readers_of(settings, doubt)
    readers = SubscriberList(settings.subscribers_dir, clock)
    deliver(make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock)
    counts = sendgrid_server.per_address()
    everyone = {reader_address(i) for i in range(READERS)}
    label = (concurrency, first, second)
    assert len(in_second) == min(BATCH, READERS - second * BATCH), label  # only the last is short
    assert all(counts[a] == 1 for a in everyone - doubtful), label
    assert all(counts[a] == 0 for a in in_second), label
    assert all(counts[a] <= 1 for a in doubtful), label


if __name__ == "__main__":
    _child(sys.argv[1])
