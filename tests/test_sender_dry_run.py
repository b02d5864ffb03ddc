"""Dry runs and the outbox: everything but the network and the ledger, no API key needed."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

from peers.sendgrid_server import SCHEMA_PATH, SendGridServer, load_schema, validate_mail

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.dry_run import THROWAWAY_NOTE
from crusader_mail.delivery.engine import deliver, send_test
from crusader_mail.delivery.transport import DryRunTransport
from tests.support.sending import (
    ledgers,
    make_issue,
    make_readers,
    make_settings,
    reader_address,
    sendgrid,
)


def _tree(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_dry_run_writes_exact_bodies_a_summary_and_one_eml_and_changes_no_state(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server, sendgrid={"batch_size": 500})
    readers = make_readers(settings, clock, 2100)
    before = (_tree(settings.state_dir), _tree(settings.subscribers_dir))

    report = deliver(
        make_issue(), readers, ledgers(settings), DryRunTransport(settings, clock), settings, clock
    )

    assert report.dry_run
    assert (report.requests, report.delivered, report.recipients) == (5, 2100, 2100)
    assert sendgrid_server.log == []  # not one request
    assert (_tree(settings.state_dir), _tree(settings.subscribers_dir)) == before
    outbox = settings.outbox_dir
    names = sorted(p.name for p in outbox.iterdir())
    assert names == [
        ".gitignore",
        "first-reader.eml",
        "request-0001.json",
        "request-0002.json",
        "request-0003.json",
        "summary.json",
    ]
    first = json.loads((outbox / "request-0001.json").read_text())
    assert len(first["personalizations"]) == 500
    assert first["personalizations"][0]["to"] == [{"email": reader_address(0), "name": "Reader 0"}]
    schema = load_schema(SCHEMA_PATH)
    assert validate_mail(first, schema) == []
    summary = json.loads((outbox / "summary.json").read_text())
    assert summary["requests"] == 5
    assert summary["requests_not_written"] == 2
    assert summary["readers_in_requests"] == 2100
    assert summary["sample_recipients"][0] == "r•••@example.com"
    assert summary["problems"] == []
    assert summary["notes"] == []
    assert summary["report"]["delivered"] == 2100

    message = email.message_from_bytes(
        (outbox / "first-reader.eml").read_bytes(), policy=policy.default
    )
    assert message["To"] == f"Reader 0 <{reader_address(0)}>"
    assert message["Subject"] == "Sell more this winter"
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    token = message["List-Unsubscribe"].split("token=")[1].rstrip(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "Biz Crusader <newsletter.bizcrusader.example>"
    html = message.get_body(("html",)).get_content()
    assert "[[" not in html
    assert f"unsubscribe?token={token}" in html
    assert reader_address(0) in html
    assert "Hello Reader 0" in html


def test_dry_run_needs_no_api_key_and_no_secret_and_says_so(
    tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, secret=None)
    assert settings.sendgrid.api_key is None
    readers = make_readers(settings, clock, 3)
    report = deliver(
        make_issue(), readers, ledgers(settings), DryRunTransport(settings, clock), settings, clock
    )
    assert report.delivered == 3
    summary = json.loads((settings.outbox_dir / "summary.json").read_text())
    assert summary["notes"] == [THROWAWAY_NOTE]
    assert not settings.state_dir.exists()


def test_a_second_dry_run_replaces_the_old_request_files(tmp_path: Path, clock: FixedClock) -> None:
    settings = make_settings(tmp_path, sendgrid={"batch_size": 1})
    readers = make_readers(settings, clock, 5)
    deliver(
        make_issue(), readers, ledgers(settings), DryRunTransport(settings, clock), settings, clock
    )
    (settings.outbox_dir / "newsletter.html").write_text("kept")
    small = make_settings(tmp_path, sendgrid={"batch_size": 10})
    deliver(make_issue(), readers, ledgers(small), DryRunTransport(small, clock), small, clock)
    names = sorted(p.name for p in settings.outbox_dir.iterdir())
    assert names == [
        ".gitignore",
        "first-reader.eml",
        "newsletter.html",
        "request-0001.json",
        "summary.json",
    ]


def test_dry_run_honours_the_ledger_of_a_partial_send(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 4)
    deliver(make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock)
    make_readers(settings, clock, 6)
    report = deliver(
        make_issue(), readers, ledgers(settings), DryRunTransport(settings, clock), settings, clock
    )
    assert (report.delivered, report.skipped["already_delivered"]) == (2, 4)
    body = json.loads((settings.outbox_dir / "request-0001.json").read_text())
    assert [p["to"][0]["email"] for p in body["personalizations"]] == [
        reader_address(4),
        reader_address(5),
    ]


def test_test_send_dry_run_writes_the_test_message(tmp_path: Path, clock: FixedClock) -> None:
    settings = make_settings(tmp_path)
    transport = DryRunTransport(settings, clock)
    report = send_test(make_issue(), "editor@example.com", transport, settings, clock)
    assert report.dry_run
    message = email.message_from_bytes(
        (settings.outbox_dir / "first-reader.eml").read_bytes(), policy=policy.default
    )
    assert message["Subject"] == "[TEST] Sell more this winter"
    assert message["To"] == "editor@example.com"
