"""The sender against the loopback SendGrid: the real sendgrid client, real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import random
import socket
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from peers.sendgrid_server import SCHEMA_PATH, SendGridServer, load_schema, validate_mail

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.body import BodyBuilder
from crusader_mail.delivery.client import Retrier, Sessions, client_factory, post_mail
from crusader_mail.delivery.engine import TEST_PREFIX, deliver, send_test
from crusader_mail.delivery.links import list_headers, personal_values, reader_links
from crusader_mail.delivery.mailer import RecordingMailer, make_mailer
from crusader_mail.errors import InvalidAddress, LockTimeout, RetriesExhausted, SendRejected
from crusader_mail.models import OutgoingMessage, Placeholder, SendReport, Status
from crusader_mail.storage.files.ledger import Ledger, ledger_path, send_lock
from crusader_mail.storage.files.subscribers import SubscriberList
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.sending import (
    ISSUE_ID,
    SECRET,
    Sleeps,
    addresses_in,
    ledgers,
    make_issue,
    make_readers,
    make_settings,
    reader_address,
    sendgrid,
)

OTHERS = {Status.UNSUBSCRIBED: 3, Status.BOUNCED: 2, Status.COMPLAINED: 1, Status.PENDING: 4}


def test_each_active_reader_gets_one_message_and_sees_only_their_own_address(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 2345, others=OTHERS)

    report = deliver(
        make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
    )

    assert report.requests == 3 == sendgrid_server.accepted_requests  # ceil(2345 / 1000)
    assert report.delivered == report.recipients == 2345
    assert report.skipped == {
        "unsubscribed": 3,
        "bounced": 2,
        "complained": 1,
        "pending": 4,
        "already_delivered": 0,
        "duplicate": 0,
    }
    assert (report.failed, report.uncertain, report.retries) == (0, 0, 0)
    received = sendgrid_server.per_address()
    everyone = {reader_address(i) for i in range(2345)}
    assert set(received) == everyone
    assert set(received.values()) == {1}
    for delivery in sendgrid_server.deliveries:
        assert delivery.recipients == delivery.to
        assert len(delivery.to) == 1
        seen = addresses_in(delivery.rendered()) & everyone
        assert seen == {delivery.to[0]}
        assert delivery.custom_args == {"issue": ISSUE_ID}
        assert delivery.categories == ("newsletter",)
        assert "[[" not in delivery.rendered()


def test_request_bodies_follow_the_v3_schema_and_carry_per_reader_values(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(
        tmp_path, sendgrid_server, sendgrid={"asm_group_id": 4242, "category": "biz-crusader"}
    )
    readers = make_readers(settings, clock, 3)
    deliver(make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock)

    signer = Signer(SECRET)
    first = sendgrid_server.to(reader_address(0))[0]
    assert [kind for kind, _ in first.content] == ["text/plain", "text/html"]
    assert first.asm == {"group_id": 4242}
    assert first.categories == ("biz-crusader",)
    token = first.headers["List-Unsubscribe"].split("token=")[1].rstrip(">")
    assert signer.matches(Purpose.UNSUBSCRIBE, token, reader_address(0), clock.now())
    assert not signer.matches(Purpose.UNSUBSCRIBE, token, reader_address(1), clock.now())
    assert first.headers["List-Unsubscribe"] == (
        f"<mailto:news+unsubscribe-{token}@bizcrusader.example>, "
        f"<https://mail.bizcrusader.example/unsubscribe?token={token}>"
    )
    assert first.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first.headers["List-Id"] == "Biz Crusader <newsletter.bizcrusader.example>"
    page = first.substitutions["[[preferences_url]]"]
    assert page.startswith("https://mail.bizcrusader.example/preferences?token=")
    choose = page.split("token=")[1]
    assert signer.matches(Purpose.PREFERENCES, choose, reader_address(0), clock.now())
    assert not signer.matches(Purpose.PREFERENCES, choose, reader_address(1), clock.now())
    assert not signer.matches(Purpose.PREFERENCES, token, reader_address(0), clock.now())
    assert first.substitutions == {
        "[[unsubscribe_url]]": f"https://mail.bizcrusader.example/unsubscribe?token={token}",
        "[[preferences_url]]": page,
        "[[email]]": reader_address(0),
        "[[name]]": "Reader 0",
    }
    # the same body, built directly, validates against the reference schema
    builder = BodyBuilder(make_issue(), settings, signer, clock.now())
    body = builder.body([builder.personalization(reader_address(i), "") for i in range(3)])
    value = body.value()
    assert body.data == json.dumps(value).encode()  # the bytes json.dumps makes of it
    schema = load_schema(SCHEMA_PATH)
    if schema is None:
        pytest.skip("../shared/sendgrid/mail-send-schema.json is not here")
    assert validate_mail(value, schema) == []
    assert "@" not in json.dumps(value["custom_args"]) + json.dumps(value["categories"])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"newsletter": {"unsubscribe_url": None}},
        {"sendgrid": {"subscription_tracking": True, "sandbox_mode": True}},
        {"newsletter": {"unsubscribe_url": "https://x.example/u?list=100%25&a=%s"}},
    ],
    ids=["one-click", "mailto", "tracking", "percent-signs"],
)
def test_templated_bodies_are_the_bytes_json_dumps_makes_of_the_personalizations(
    tmp_path: Path, clock: FixedClock, options: dict[str, Any]
) -> None:
    """Each reader's personalization is filled into a template; the body is byte for byte
    ``json.dumps`` of the personalizations built as values, whatever the names hold."""
    settings = make_settings(tmp_path, **options)
    signer = Signer(SECRET)
    builder = BodyBuilder(make_issue(), settings, signer, clock.now())
    people = [
        ("ann@example.com", "Ann O'Neil 100%"),
        ("Bob@Example.com", ""),
        ("cy@example.com", 'C"y <cy>\\ \t  Zed\u2028'),
        ("dé@example.com", "Zoë  Ünïcode %(e)s"),
    ]
    body = builder.body([builder.personalization(email, name) for email, name in people])
    now, ref = clock.now(), make_issue().issue_id
    expected = [
        builder.personalization_value(
            email, name, reader_links(settings, signer, email, now), signer.mail_id(email, ref)
        )
        for email, name in people
    ]
    value = body.value()
    assert value["personalizations"] == expected
    assert body.data == json.dumps(value).encode()
    assert body.readers == 4
    assert value["personalizations"][2]["to"] == [{"email": "cy@example.com", "name": "Cy cy Zed"}]
    assert "name" not in value["personalizations"][1]["to"][0]


def test_without_https_url_the_mailto_is_the_visible_link_and_no_one_click(
    tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, newsletter={"unsubscribe_url": None})
    signer = Signer(SECRET)
    headers = list_headers(settings, signer, "jane@example.com", clock.now())
    assert set(headers) == {"List-Unsubscribe", "List-Id"}
    assert headers["List-Unsubscribe"].startswith("<mailto:news+unsubscribe-")
    reader = make_readers(settings, clock, 1)
    subscriber = next(reader.iter(Status.ACTIVE))
    values = personal_values(settings, signer, subscriber, clock.now())
    own = list_headers(settings, signer, subscriber.email, clock.now())
    assert values[Placeholder.UNSUBSCRIBE_URL] == own["List-Unsubscribe"][1:-1]
    assert own != headers  # bound to the address
    assert values[Placeholder.EMAIL] == reader_address(0)
    assert Placeholder.PREFERENCES_URL not in values  # no web pages: no preferences page


def test_batches_never_exceed_batch_size_and_requests_go_one_at_a_time(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(
        tmp_path, sendgrid_server, sendgrid={"batch_size": 7, "concurrency": 1}
    )
    readers = make_readers(settings, clock, 50)
    sendgrid_server.delay = 0.01
    report = deliver(
        make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
    )
    assert report.requests == 8
    sizes = [sum(1 for d in sendgrid_server.deliveries if d.request == r) for r in range(8)]
    assert sizes == [7] * 7 + [1]
    assert sendgrid_server.max_in_flight == 1  # concurrency 1: one batch in flight
    assert sendgrid_server.connections == 1  # every request on one kept-alive connection


@pytest.mark.parametrize("concurrency", [2, 4])
def test_concurrency_requests_are_in_flight_at_once_on_kept_alive_connections(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer, concurrency: int
) -> None:
    """The peer holds the first mail sends until ``concurrency`` are in flight at once (no
    timing: a send that went one at a time would make it wait in vain). The ledger never holds
    more than ``concurrency`` batches without an outcome: a crash could leave no more in doubt."""
    settings = make_settings(
        tmp_path, sendgrid_server, sendgrid={"batch_size": 10, "concurrency": concurrency}
    )
    readers = make_readers(settings, clock, 205)
    sendgrid_server.gather = concurrency
    most_in_doubt = []

    def check(event: str, batch: int) -> None:
        ledger = Ledger.load(ledger_path(settings.state_dir, ISSUE_ID), ISSUE_ID, SECRET)
        most_in_doubt.append(len(ledger.in_doubt_batches))

    transport = sendgrid(settings, clock)
    report = deliver(
        make_issue(), readers, ledgers(settings), transport, settings, clock, hook=check
    )
    assert (report.requests, report.delivered) == (21, 205)
    assert sendgrid_server.gathered
    assert sendgrid_server.max_in_flight == concurrency
    assert 1 <= max(most_in_doubt) <= concurrency
    assert 1 <= sendgrid_server.connections <= concurrency  # kept alive: not one per request
    assert transport.connections == sendgrid_server.connections
    assert set(sendgrid_server.per_address().values()) == {1}
    assert len(sendgrid_server.per_address()) == 205
    again = deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    assert (again.delivered, again.skipped["already_delivered"]) == (0, 205)


def test_a_connection_the_server_closed_while_idle_is_made_again(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    sessions = Sessions(client_factory(settings))
    body = json.dumps(_valid_body()).encode()
    sessions.post_mail(body, 5.0)
    sessions.post_mail(body, 5.0)
    assert sendgrid_server.connections == sessions.connections == 1
    with sendgrid_server._lock:  # the server closes the idle connection
        for sock in sendgrid_server._open:
            sock.shutdown(socket.SHUT_RDWR)
    response = sessions.post_mail(body, 5.0)
    assert response.status_code == 202
    assert sendgrid_server.connections == sessions.connections == 2
    sessions.close()
    assert len(sendgrid_server.deliveries) == 6


def test_sandbox_mode_is_answered_200_and_never_counts_as_a_real_delivery(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    sandbox = make_settings(tmp_path, sendgrid_server, sendgrid={"sandbox_mode": True})
    readers = make_readers(sandbox, clock, 20)
    report = deliver(
        make_issue(), readers, ledgers(sandbox), sendgrid(sandbox, clock), sandbox, clock
    )
    assert report.delivered == 20
    assert sendgrid_server.sandboxed_requests == 1
    assert sendgrid_server.deliveries == []
    assert ledger_path(sandbox.state_dir, ISSUE_ID, sandbox=True).exists()
    assert not ledger_path(sandbox.state_dir, ISSUE_ID).exists()

    real = make_settings(tmp_path, sendgrid_server)
    report = deliver(make_issue(), readers, ledgers(real), sendgrid(real, clock), real, clock)
    assert report.delivered == 20
    assert set(sendgrid_server.per_address().values()) == {1}


def test_a_second_run_sends_nothing_and_a_new_reader_gets_it_alone(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 30)
    transport = sendgrid(settings, clock)
    deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    again = deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    assert (again.delivered, again.requests, again.skipped["already_delivered"]) == (0, 0, 30)

    make_readers(settings, clock, 31)  # reader00030 joins
    late = deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    assert (late.delivered, late.requests) == (1, 1)
    assert set(sendgrid_server.per_address().values()) == {1}
    assert len(sendgrid_server.per_address()) == 31


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "check sendgrid.api_key"),
        (403, "scope of sendgrid.api_key"),
    ],
)
def test_auth_failures_stop_the_send_naming_the_key_setting(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer, status: int, hint: str
) -> None:
    if status == 403:
        sendgrid_server.forbidden_keys = ("SG.read-only",)
    key = "SG.read-only" if status == 403 else "SG.wrong"
    settings = make_settings(tmp_path, sendgrid_server)
    settings = settings.model_copy(
        update={"sendgrid": settings.sendgrid.model_copy(update={"api_key": _secret(key)})}
    )
    readers = make_readers(settings, clock, 5)
    with pytest.raises(SendRejected) as caught:
        deliver(
            make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
        )
    message = str(caught.value)
    assert f"HTTP {status}" in message
    assert hint in message
    assert "\n" not in message
    assert isinstance(caught.value.report, SendReport)
    assert caught.value.report.delivered == 0
    assert caught.value.report.failed == 5
    assert sendgrid_server.deliveries == []


def test_a_request_over_30_mb_is_rejected_with_the_batch_size_hint(
    tmp_path: Path, clock: FixedClock
) -> None:
    with SendGridServer(max_body=4000) as server:  # the 30 MB limit, scaled down
        settings = make_settings(tmp_path, server)
        readers = make_readers(settings, clock, 10)
        with pytest.raises(SendRejected, match=r"HTTP 413.*sendgrid\.batch_size"):
            deliver(
                make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
            )


def test_an_empty_subject_is_a_400_naming_the_subject_setting(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 2)
    with pytest.raises(SendRejected) as caught:
        deliver(
            make_issue(subject=""),
            readers,
            ledgers(settings),
            sendgrid(settings, clock),
            settings,
            clock,
        )
    assert "HTTP 400" in str(caught.value)
    assert "(field subject)" in str(caught.value)
    assert "compose.subject" in str(caught.value)


def test_429_waits_for_the_rate_limit_reset_then_succeeds(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 10)
    reset = int(clock.now().timestamp()) + 5
    sendgrid_server.fail(429, 2, reset=reset)
    sleeps = Sleeps()
    transport = sendgrid(settings, clock, sleep=sleeps, rng=random.Random(1))
    report = deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    assert report.retries == 2
    assert report.delivered == 10
    assert len(sleeps.calls) == 2
    assert all(5 <= s <= 6 for s in sleeps.calls)  # until the reset, plus < 1 s of jitter


def test_5xx_and_dropped_connections_are_retried_with_bounded_full_jitter(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server, sendgrid={"max_retries": 3})
    readers = make_readers(settings, clock, 10)
    sendgrid_server.fail(500)
    sendgrid_server.fail("drop")
    sendgrid_server.fail(503)
    sleeps = Sleeps()
    transport = sendgrid(settings, clock, sleep=sleeps, rng=random.Random(7))
    report = deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    assert report.retries == 3
    assert report.delivered == 10
    ceilings = [0.5, 1.0, 2.0]  # backoff_base * 2**attempt, under backoff_max
    assert all(0 <= s <= c for s, c in zip(sleeps.calls, ceilings, strict=True))
    assert set(sendgrid_server.per_address().values()) == {1}


def test_giving_up_after_5xx_records_failure_and_a_rerun_resumes(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(
        tmp_path, sendgrid_server, sendgrid={"max_retries": 2, "batch_size": 10, "concurrency": 1}
    )
    readers = make_readers(settings, clock, 35)
    transport = sendgrid(settings, clock, sleep=Sleeps())
    sendgrid_server.fail("drop_after_accept", 0)  # no-op: keeps the API honest
    deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    # a second issue: the first batch goes out, then SendGrid is down
    issue = make_issue(issue_id="2026-11-30-00000002")
    hooks: list[tuple[str, int]] = []

    def outage(event: str, batch: int) -> None:
        hooks.append((event, batch))
        if (event, batch) == ("recorded", 0):
            sendgrid_server.fail(500, 3)

    with pytest.raises(RetriesExhausted) as caught:
        deliver(issue, readers, ledgers(settings), transport, settings, clock, hook=outage)
    assert caught.value.answered
    partial = caught.value.report
    assert isinstance(partial, SendReport)
    assert (partial.delivered, partial.failed, partial.uncertain) == (10, 25, 0)
    assert "HTTP 500" in str(caught.value)
    assert "again" in str(caught.value)
    resumed = deliver(issue, readers, ledgers(settings), transport, settings, clock)
    assert (resumed.delivered, resumed.uncertain, resumed.skipped["already_delivered"]) == (
        25,
        0,
        10,
    )
    second = [d for d in sendgrid_server.deliveries if d.custom_args["issue"] == issue.issue_id]
    assert sorted(d.to[0] for d in second) == sorted(reader_address(i) for i in range(35))


def test_with_requests_in_flight_a_failure_waits_for_them_and_a_rerun_resumes(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    """SendGrid goes down while 3 requests are in flight: no new one starts, those in flight
    are answered and recorded (accepted or failed: none in doubt), and a rerun sends the rest."""
    settings = make_settings(
        tmp_path,
        sendgrid_server,
        sendgrid={"max_retries": 0, "batch_size": 10, "concurrency": 3},
    )
    readers = make_readers(settings, clock, 95)
    transport = sendgrid(settings, clock, sleep=Sleeps())

    def outage(event: str, batch: int) -> None:
        if (event, batch) == ("recorded", 0):
            sendgrid_server.fail(500, 100)

    with pytest.raises(RetriesExhausted) as caught:
        deliver(make_issue(), readers, ledgers(settings), transport, settings, clock, hook=outage)
    partial = caught.value.report
    assert isinstance(partial, SendReport)
    assert partial.uncertain == 0
    assert partial.delivered >= 10
    assert partial.delivered + partial.failed == 95
    failed_requests = partial.requests - sendgrid_server.accepted_requests
    assert 1 <= failed_requests <= 3  # at most those in flight: none began after the failure
    ledger = Ledger.load(ledger_path(settings.state_dir, ISSUE_ID), ISSUE_ID, SECRET)
    assert ledger.in_doubt_batches == []
    sendgrid_server.clear_faults()
    resumed = deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    assert resumed.delivered == partial.failed
    assert resumed.skipped["already_delivered"] == partial.delivered
    assert sendgrid_server.per_address() == dict.fromkeys((reader_address(i) for i in range(95)), 1)


def test_a_timeout_leaves_one_batch_in_doubt_skipped_unless_resend_uncertain(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(
        tmp_path,
        sendgrid_server,
        sendgrid={"max_retries": 0, "batch_size": 10, "timeout": 0.3, "concurrency": 1},
    )
    readers = make_readers(settings, clock, 25)
    transport = sendgrid(settings, clock)

    def slow_second(event: str, batch: int) -> None:
        sendgrid_server.delay = 1.0 if (event, batch) == ("pending", 1) else 0.0

    with pytest.raises(RetriesExhausted) as caught:
        deliver(
            make_issue(), readers, ledgers(settings), transport, settings, clock, hook=slow_second
        )
    assert not caught.value.answered  # a timeout: SendGrid may have taken it
    assert isinstance(caught.value.report, SendReport)
    assert caught.value.report.uncertain == 10

    sendgrid_server.delay = 0.0
    skipped = deliver(make_issue(), readers, ledgers(settings), transport, settings, clock)
    assert (skipped.delivered, skipped.uncertain, skipped.skipped["already_delivered"]) == (
        5,
        10,
        10,
    )
    resent = deliver(
        make_issue(), readers, ledgers(settings), transport, settings, clock, resend_uncertain=True
    )
    assert (resent.delivered, resent.uncertain) == (10, 0)
    counts = sendgrid_server.per_address()
    assert all(counts[reader_address(i)] >= 1 for i in range(25))
    doubtful = {reader_address(i) for i in range(10, 20)}  # batch 1
    assert all(counts[a] == 1 for a in counts if a not in doubtful)


def test_two_sends_never_run_at_once(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 3)
    with send_lock(settings.state_dir), pytest.raises(LockTimeout):
        deliver(
            make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
        )
    assert sendgrid_server.mail_requests() == []


def test_a_real_send_needs_the_secret_key(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server, secret=None)
    readers = make_readers(settings, clock, 3)
    from crusader_mail.errors import ConfigError

    with pytest.raises(ConfigError, match="secret_key"):
        deliver(
            make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
        )


def test_send_test_goes_to_one_address_with_test_subject_and_no_ledger(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    make_readers(settings, clock, 5)
    report = send_test(
        make_issue(), "Editor@Example.COM", sendgrid(settings, clock), settings, clock
    )
    assert (report.recipients, report.delivered, report.requests) == (1, 1, 1)
    [delivery] = sendgrid_server.deliveries
    assert delivery.to == ("Editor@example.com",)
    assert delivery.subject == TEST_PREFIX + "Sell more this winter"
    assert not (settings.state_dir / "ledger").exists() or not any(
        (settings.state_dir / "ledger").glob("*.jsonl")
    )
    with pytest.raises(InvalidAddress, match="--to"):
        send_test(make_issue(), "not an address", sendgrid(settings, clock), settings, clock)


def test_transactional_mailers(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    message = OutgoingMessage(
        to_email="jane@example.com",
        to_name="Jane\r\nBcc: evil@example.net",
        subject="Please confirm",
        text="Reply to confirm.",
        html="<p>Reply to confirm.</p>",
        headers={"Auto-Submitted": "auto-replied"},
        category="confirm",
    )
    make_mailer(settings, clock).send_one(message)
    [delivery] = sendgrid_server.deliveries
    assert delivery.to == ("jane@example.com",)
    assert delivery.recipients == ("jane@example.com",)
    assert delivery.categories == ("confirm",)
    assert delivery.headers == {"Auto-Submitted": "auto-replied"}
    recorder = RecordingMailer()
    recorder.send_one(message)
    assert recorder.sent == [message]


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _valid_body(count: int = 2) -> dict[str, Any]:
    return {
        "personalizations": [{"to": [{"email": reader_address(i)}]} for i in range(count)],
        "from": {"email": "news@bizcrusader.example"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "hi"}, {"type": "text/html", "value": "<p>hi"}],
    }


def _break(kind: str) -> dict[str, Any]:
    body = _valid_body()
    if kind == "recipients":
        body["personalizations"] = [
            {"to": [{"email": reader_address(2 * i)}, {"email": reader_address(2 * i + 1)}]}
            for i in range(501)
        ]
    elif kind == "duplicate":
        body["personalizations"][1]["to"] = [{"email": reader_address(0)}]
    elif kind == "subject":
        del body["subject"]
    elif kind == "order":
        body["content"].reverse()
    elif kind == "substitutions":
        body["personalizations"][0]["substitutions"] = {"[[big]]": "x" * 10_000}
    elif kind == "from":
        del body["from"]
    return body


@pytest.mark.parametrize(
    ("kind", "field", "setting"),
    [
        ("recipients", "personalizations", "sendgrid.batch_size"),
        ("duplicate", "personalizations.1.to", "sendgrid.batch_size"),
        ("subject", "subject", "compose.subject"),
        ("order", "content", "templates"),
        ("substitutions", "personalizations.0.substitutions", "sendgrid.batch_size"),
        ("from", "from", "newsletter.from_email"),
    ],
)
def test_invalid_requests_get_sendgrids_400_and_a_one_line_rejection(
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    kind: str,
    field: str,
    setting: str,
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    client = client_factory(settings)()
    retrier = Retrier(settings.sendgrid, clock, Sleeps())
    with pytest.raises(SendRejected) as caught:
        retrier.call("the request", partial(post_mail, client, _json(_break(kind)), 5.0))
    message = str(caught.value)
    assert message.startswith("SendGrid rejected the request (HTTP 400): ")
    assert f"(field {field})" in message
    assert setting in message
    assert "reader00000@" not in message  # SendGrid's message quotes the address: masked
    assert retrier.retries == 0
    assert sendgrid_server.deliveries == []
    retrier.call("the request", partial(post_mail, client, _json(_valid_body()), 5.0))
    assert len(sendgrid_server.deliveries) == 2


def test_every_request_has_the_configured_timeout(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        sendgrid={"api_key": _secret("SG.x"), "api_url": "http://127.0.0.1:9/", "timeout": 4.5},
    )
    client = client_factory(settings)()
    assert client.client.timeout == 4.5
    assert client.client.mail.send.timeout == 4.5
    assert client.host == "http://127.0.0.1:9"


def test_a_damaged_list_stops_the_send_before_anything_is_sent(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server, sendgrid={"batch_size": 5})
    readers = make_readers(settings, clock, 12)
    lines = readers.path.read_text().splitlines(keepends=True)
    lines[10] = "not,a,row\n"  # reader 8 (line 11)
    readers.path.write_text("".join(lines))
    from crusader_mail.errors import StateError

    with pytest.raises(StateError, match="line 11"):
        deliver(
            make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
        )
    assert sendgrid_server.log == []  # the whole list is read (counted) before any request


def test_the_recipients_stream_names_a_row_it_cannot_read(
    tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path)
    readers = make_readers(settings, clock, 4)
    lines = readers.path.read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace(",Reader 2,", ',"Reader, 2",extra,')  # a column too many
    readers.path.write_text("".join(lines))
    stream = readers.recipients()
    assert [next(stream), next(stream)] == [
        (reader_address(0), "Reader 0"),
        (reader_address(1), "Reader 1"),
    ]
    from crusader_mail.errors import StateError

    with pytest.raises(StateError, match=r"subscribers\.csv, line 5: 12 columns, expected 11"):
        next(stream)


def test_one_mailbox_gets_one_copy_and_the_counts_add_up(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    """A list of version 1, read as it is by a send, may hold one mailbox twice: the second
    reader is counted as a duplicate, never sent twice and never dropped silently."""
    settings = make_settings(tmp_path, sendgrid_server, sendgrid={"batch_size": 2})
    stamp = "2026-01-01T00:00:00Z"
    rows = ["Carol@example.org", "Zed@example.org", "bob@example.org", "carol@example.org"]
    rows += ["dan@example.org", "zED@example.org", "zed@example.org"]
    settings.subscribers_dir.mkdir(parents=True)
    (settings.subscribers_dir / "subscribers.csv").write_text(
        "# crusader-mail subscribers v1\n"
        + "email,name,status,subscribed_at,subscribed_via,confirmed_at,confirmed_via,left_at,"
        + "left_via,ref,updated_at\n"
        + "".join(f"{email},,active,{stamp},cli,{stamp},cli,,,,{stamp}\n" for email in rows)
    )
    readers = SubscriberList(settings.subscribers_dir, clock)
    report = deliver(
        make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
    )
    assert report.recipients == 7
    assert (report.delivered, report.skipped["duplicate"]) == (4, 3)
    assert report.delivered + report.skipped["duplicate"] == report.recipients
    assert sendgrid_server.per_address() == dict.fromkeys(
        ["carol@example.org", "zed@example.org", "bob@example.org", "dan@example.org"], 1
    )
    again = deliver(  # a rerun: everyone accepted, the duplicates counted again
        make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock
    )
    assert (again.delivered, again.skipped["already_delivered"], again.skipped["duplicate"]) == (
        0,
        4,
        3,
    )
