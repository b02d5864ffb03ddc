"""Suppression sync against the loopback SendGrid: every list, pagination, faults."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from peers.sendgrid_server import SendGridServer

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.client import client_factory
from crusader_mail.delivery.engine import deliver
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.errors import SendRejected
from crusader_mail.models import Source, Status
from tests.support.sending import (
    Sleeps,
    ledgers,
    make_issue,
    make_readers,
    make_settings,
    reader_address,
    sendgrid,
)


def test_every_list_is_pulled_page_by_page_and_none_of_them_gets_the_issue(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(
        tmp_path, sendgrid_server, sendgrid={"asm_group_id": 77, "concurrency": 3}
    )
    readers = make_readers(settings, clock, 40)
    strangers = [f"stranger{i}@elsewhere.example" for i in range(1203)]
    sendgrid_server.add_suppressions("bounces", [*strangers, reader_address(1)])
    sendgrid_server.groups[77] = [reader_address(2).upper().replace("EXAMPLE.COM", "example.com")]
    sendgrid_server.add_suppressions("unsubscribes", [reader_address(3)])
    sendgrid_server.add_suppressions("spam_reports", [reader_address(4)])
    sendgrid_server.add_suppressions("invalid_emails", [reader_address(5)])

    counts = sync_suppressions(settings, readers, clock, client_factory(settings))

    assert counts == {
        "group": 1,
        "unsubscribes": 1,
        "bounces": 1204,
        "spam_reports": 1,
        "invalid_emails": 1,
        "unsubscribed": 2,
        "bounced": 2,
        "complained": 1,
    }
    offsets = [
        int(entry.query["offset"][0])
        for entry in sendgrid_server.log
        if entry.path == "/v3/suppression/bounces"
    ]
    assert sorted(offsets) == [0, 500, 1000]
    status = {s.email: s for s in readers.iter()}
    assert status[reader_address(1)].status is Status.BOUNCED
    assert status[reader_address(2)].status is Status.UNSUBSCRIBED
    assert status[reader_address(3)].status is Status.UNSUBSCRIBED
    assert status[reader_address(4)].status is Status.COMPLAINED
    assert status[reader_address(5)].status is Status.BOUNCED
    assert status[reader_address(4)].left_via is Source.SENDGRID
    assert status[reader_address(4)].ref == "sendgrid:spam_reports"
    assert not any(s.email.startswith("stranger") for s in readers.iter())

    report = deliver(
        make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
    )
    assert report.delivered == 35
    received = sendgrid_server.per_address()
    assert all(received[reader_address(i)] == 0 for i in range(1, 6))
    assert len(received) == 35


def test_a_reader_who_left_keeps_their_reason(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 0, others={Status.COMPLAINED: 1})
    sendgrid_server.add_suppressions("unsubscribes", ["complained0@example.org"])
    counts = sync_suppressions(settings, readers, clock, client_factory(settings))
    assert counts["unsubscribed"] == 0
    assert next(readers.iter()).status is Status.COMPLAINED


def test_nothing_suppressed_leaves_the_list_file_alone(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 3)
    before = readers.path.read_bytes()
    counts = sync_suppressions(settings, readers, clock, client_factory(settings))
    assert set(counts.values()) == {0}
    assert readers.path.read_bytes() == before
    assert len(sendgrid_server.log) == 4  # no group configured: four lists, one page each


def test_faults_on_the_suppression_endpoints_are_retried(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 3)
    sendgrid_server.add_suppressions("spam_reports", [reader_address(0)])
    sendgrid_server.fail(429, reset=int(clock.now().timestamp()) + 2, paths="/v3/suppression/")
    sendgrid_server.fail("drop", paths="/v3/suppression/")
    sleeps = Sleeps()
    counts = sync_suppressions(
        settings, readers, clock, client_factory(settings), sleep=sleeps, rng=random.Random(3)
    )
    assert counts["complained"] == 1
    assert len(sleeps.calls) == 2


def test_a_missing_group_or_a_bad_key_stops_with_the_setting_to_fix(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server, sendgrid={"asm_group_id": 9})
    readers = make_readers(settings, clock, 1)
    with pytest.raises(SendRejected, match=r"HTTP 404.*asm_group_id"):
        sync_suppressions(settings, readers, clock, client_factory(settings))
    sendgrid_server.groups[9] = []
    sendgrid_server.api_key = "SG.rotated"
    with pytest.raises(SendRejected, match=r"HTTP 401.*sendgrid\.api_key"):
        sync_suppressions(settings, readers, clock, client_factory(settings))
