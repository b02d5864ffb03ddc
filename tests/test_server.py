"""The web endpoints over real HTTP (uvicorn on 127.0.0.1), replies through the loopback
SendGrid-like server and the real sendgrid client."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from peers.sendgrid_server import SendGridServer, sendgrid_server

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.mailer import Mailer, make_mailer
from crusader_mail.inbox.sources import MAX_MESSAGE_BYTES
from crusader_mail.models import OutgoingMessage, Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.files import FilesStore
from crusader_mail.storage.files.mail import FileMailBatch, FileMailQueue
from crusader_mail.storage.files.subscribers import SubscriberList
from crusader_mail.subscriptions.outbox import OutboxReport, send_queued
from crusader_mail.subscriptions.service import reader_state
from crusader_mail.util.tokens import Purpose, Signer
from crusader_mail.web.app import build_app
from crusader_mail.web.pages import MAX_FORM_BODY
from crusader_mail.web.sendgrid_hooks import MAX_EVENT_AGE
from tests.support.commands import signed_request
from tests.support.inbox import SECRET, make_settings
from tests.support.web import running

__all__ = ["sendgrid_server"]

JANE = "jane@reader.example"
INBOUND_SECRET = "inbound-secret-abc123"


class Drains(FileMailQueue):
    """The server's mail queue, observed: a test waits until the drains the app started after
    its responses have ended (a drain ends with a claim that finds nothing due, or at a
    reply that failed) and how many replies they settled (sent or failed)."""

    def __init__(self, settings: Settings, clock: FixedClock) -> None:
        super().__init__(settings.subscribers_dir, clock.now)
        self.ended = 0
        self.failed = 0
        self._changed = threading.Condition()

    @contextmanager
    def claim(self, now: datetime, limit: int = 100) -> Iterator[FileMailBatch]:
        with super().claim(now, limit) as batch:
            yield batch
        with self._changed:
            self.failed += len(batch.errors)
            self.ended += 1 if not batch.mails or batch.errors else 0
            self._changed.notify_all()

    def wait(self, ended: int) -> None:
        """Until ``ended`` drains have ended in all (the timeout is a safety net only)."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.ended >= ended, timeout=30)


@contextmanager
def serving(
    settings: Settings,
    clock: FixedClock,
    drains: Drains | None = None,
    mailer: Mailer | None = None,
) -> Iterator[str]:
    mailer = mailer or make_mailer(settings, clock, sleep=lambda _s: None)
    store = open_store(settings, clock)
    if drains is not None:
        assert isinstance(store, FilesStore)
        store.mail = drains
    with running(build_app(settings, clock, mailer, store)) as url:
        yield url


@pytest.fixture
def event_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def settings(
    clean_env: Path,
    tmp_path: Path,
    sendgrid_server: SendGridServer,
    event_key: ec.EllipticCurvePrivateKey,
) -> Settings:
    public = event_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return make_settings(
        tmp_path,
        sendgrid={"api_key": sendgrid_server.api_key, "api_url": sendgrid_server.url},
        server={
            "trusted_authserv_id": "mx.bizcrusader.example",
            "inbound_secret": INBOUND_SECRET,
            "event_public_key": base64.b64encode(public).decode(),
        },
    )


@pytest.fixture
def replies(settings: Settings, clock: FixedClock) -> Drains:
    return Drains(settings, clock)


@pytest.fixture
def base(settings: Settings, clock: FixedClock, replies: Drains) -> Iterator[str]:
    with serving(settings, clock, replies) as url:
        yield url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10, follow_redirects=False) as client:
        yield client


def readers(settings: Settings, clock: FixedClock) -> SubscriberList:
    return SubscriberList(settings.subscribers_dir, clock)


def add(settings: Settings, clock: FixedClock, email: str, status: Status = Status.ACTIVE) -> None:
    with readers(settings, clock).edit() as roster:
        roster.add(email, status=status, via=Source.CLI)


def token(purpose: Purpose, email: str, clock: FixedClock) -> str:
    return Signer(SECRET).make(purpose, email, clock.now())


def confirm_token(settings: Settings, clock: FixedClock, email: str) -> str:
    """A confirmation token as the service makes it: for the reader as they are now."""
    state = reader_state(readers(settings, clock).get(email))
    return Signer(SECRET).make(Purpose.CONFIRM, email, clock.now(), state)


def snapshot(settings: Settings) -> dict[str, bytes]:
    found = {}
    for folder in (settings.subscribers_dir, settings.state_dir):
        if folder.exists():
            for path in folder.rglob("*"):
                if path.is_file() and not path.name.endswith(".lock"):
                    found[str(path)] = path.read_bytes()
    return found


def check_page(html: str) -> None:
    assert '<html lang="en">' in html
    assert len(re.findall(r"<h1[ >]", html)) == 1
    assert "Biz Crusader" in html
    assert "<script" not in html
    assert JANE not in html


# --- unsubscribe ------------------------------------------------------------------------------


def test_get_unsubscribe_shows_a_button_and_changes_nothing(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    add(settings, clock, JANE)
    before = snapshot(settings)
    leave = token(Purpose.UNSUBSCRIBE, JANE, clock)
    for _ in range(3):  # mail scanners follow links, several times
        response = http.get("/unsubscribe", params={"token": leave})
        assert response.status_code == 200
    check_page(response.text)
    assert 'method="post"' in response.text
    assert "<button" in response.text
    assert "j•••@reader.example" in response.text
    # its "Pause instead?" form is origin-checked: the browser must send its Origin; the token
    # in its URL still goes to no other site
    assert response.headers["referrer-policy"] == "same-origin"
    assert "Pause instead?" in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert snapshot(settings) == before
    assert sendgrid_server.deliveries == []


def test_post_unsubscribe_from_the_page(
    http: httpx.Client,
    settings: Settings,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    replies: Drains,
) -> None:
    add(settings, clock, JANE)
    leave = token(Purpose.UNSUBSCRIBE, JANE, clock)
    response = http.post("/unsubscribe", data={"token": leave})
    assert response.status_code == 200
    check_page(response.text)
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.UNSUBSCRIBED
    assert reader.left_via is Source.WEB
    # the page is the goodbye: what happened, no more mail, how to come back; no mail follows
    assert "You are unsubscribed" in response.text
    assert "no more mail comes" in response.text
    assert "subscribe to Biz Crusader again" in response.text
    assert http.post("/unsubscribe", data={"token": leave}).status_code == 200  # again: 200
    replies.wait(2)
    assert sendgrid_server.to(JANE) == []
    assert open_store(settings, clock).mail.waiting() == 0


def test_rfc8058_one_click(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    add(settings, clock, JANE)
    add(settings, clock, "bob@reader.example")
    leave = token(Purpose.UNSUBSCRIBE, JANE, clock)
    response = http.post(
        f"/unsubscribe?token={leave}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert readers(settings, clock).counts()[Status.UNSUBSCRIBED] == 1
    bob = readers(settings, clock).get("bob@reader.example")
    assert bob is not None
    assert bob.status is Status.ACTIVE


def one_click(base: str, leave: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10) as http:
        return http.post(
            f"/unsubscribe?token={leave}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


class Watching:
    """The app's mailer: notes how the reader stood when their goodbye was first tried."""

    def __init__(self, inner: Mailer, settings: Settings, clock: FixedClock) -> None:
        self.inner = inner
        self.settings = settings
        self.clock = clock
        self.seen: list[Status | None] = []

    def send_one(self, message: OutgoingMessage) -> None:
        reader = readers(self.settings, self.clock).get(message.to_email)
        self.seen.append(reader.status if reader else None)
        self.inner.send_one(message)


def test_confirm_answers_at_once_while_sendgrid_fails_and_the_welcome_follows(
    settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer, replies: Drains
) -> None:
    add(settings, clock, JANE, Status.PENDING)
    yes = confirm_token(settings, clock, JANE)
    sendgrid_server.fail(503, count=settings.sendgrid.max_retries + 1, paths="/v3/mail/send")
    released = threading.Event()  # the mailer's retry waits hang on this until released

    def hang(_seconds: float) -> None:
        released.wait()

    gated = make_mailer(settings, clock, sleep=hang)
    mailer = Watching(gated, settings, clock)
    try:
        with serving(settings, clock, replies, mailer) as base:
            response = httpx.post(f"{base}/confirm", data={"token": yes}, timeout=10)
            # the answer came while the welcome cannot have gone out: its retries still wait
            assert response.status_code == 200
            assert "You are subscribed" in response.text
            assert not released.is_set()
            reader = readers(settings, clock).get(JANE)
            assert reader is not None
            assert reader.status is Status.ACTIVE
            released.set()
            replies.wait(1)  # the drain after the response ended: the welcome failed
            assert replies.failed == 1
    finally:
        released.set()
    assert mailer.seen == [Status.ACTIVE]  # the change was stored before the mail
    assert sendgrid_server.to(JANE) == []
    store = open_store(settings, clock)
    assert store.mail.waiting() == 1  # kept, to be tried again
    # SendGrid is back (its failures are used up): the next drain sends the welcome
    clock.advance(timedelta(minutes=3))  # past the wait after a failure
    report = send_queued(store, make_mailer(settings, clock, sleep=lambda _s: None), clock)
    assert report == OutboxReport(sent=1, failed=0, waiting=0)
    [welcome] = sendgrid_server.to(JANE)
    assert welcome.subject == "Welcome to Biz Crusader"


def test_one_click_works_while_sendgrid_refuses_connections(
    settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer, replies: Drains
) -> None:
    """A one-click sends no mail at all (the page is the goodbye): SendGrid being unreachable
    changes nothing in it; a confirmation's welcome then waits for it and goes out later."""
    add(settings, clock, JANE)
    add(settings, clock, "bob@reader.example", Status.PENDING)
    yes = confirm_token(settings, clock, "bob@reader.example")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"  # nobody listens there
    down = settings.model_copy(
        update={"sendgrid": settings.sendgrid.model_copy(update={"api_url": nowhere})}
    )
    mailer = make_mailer(down, clock, sleep=lambda _s: None)
    with serving(settings, clock, replies, mailer) as base:
        response = one_click(base, token(Purpose.UNSUBSCRIBE, JANE, clock))
        assert response.status_code == 200
        reader = readers(settings, clock).get(JANE)
        assert reader is not None
        assert reader.status is Status.UNSUBSCRIBED
        replies.wait(1)
        assert replies.failed == 0  # nothing to send
        assert open_store(settings, clock).mail.waiting() == 0
        assert httpx.post(f"{base}/confirm", data={"token": yes}, timeout=10).status_code == 200
        replies.wait(2)
        assert replies.failed == 1
    store = open_store(settings, clock)
    with store.mail.claim(clock.now() + timedelta(minutes=3)) as kept:
        [welcome] = kept.mails
        assert welcome.attempts == 1
        assert "ConnectionRefused" in welcome.last_error or "refused" in welcome.last_error
    clock.advance(timedelta(minutes=3))
    sent = send_queued(store, make_mailer(settings, clock, sleep=lambda _s: None), clock)
    assert (sent.sent, sent.waiting) == (1, 0)
    assert sendgrid_server.to(JANE) == []
    [welcome_sent] = sendgrid_server.to("bob@reader.example")
    assert welcome_sent.subject == "Welcome to Biz Crusader"


def test_bad_tokens_change_nothing(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    add(settings, clock, JANE)
    before = snapshot(settings)
    confirm_token = token(Purpose.CONFIRM, JANE, clock)  # the wrong purpose
    for bad in ["", "nonsense", "a" * 29, confirm_token]:
        response = http.post("/unsubscribe", data={"token": bad})
        assert response.status_code == 400, bad
        check_page(response.text)
        assert http.get("/unsubscribe", params={"token": bad}).status_code == 400
    after = snapshot(settings)
    list_file = str(readers(settings, clock).path)
    assert after[list_file] == before[list_file]
    assert sendgrid_server.deliveries == []


# --- confirm ----------------------------------------------------------------------------------


def test_confirm_page_then_button(
    http: httpx.Client,
    settings: Settings,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    replies: Drains,
) -> None:
    add(settings, clock, JANE, Status.PENDING)
    yes = confirm_token(settings, clock, JANE)
    page = http.get("/confirm", params={"token": yes})
    assert page.status_code == 200
    check_page(page.text)
    assert 'action="/confirm"' in page.text
    pending = readers(settings, clock).get(JANE)
    assert pending is not None
    assert pending.status is Status.PENDING
    done = http.post("/confirm", data={"token": yes})
    assert done.status_code == 200
    check_page(done.text)
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.ACTIVE
    assert reader.confirmed_via is Source.WEB
    replies.wait(1)
    [welcome] = sendgrid_server.to(JANE)
    assert welcome.subject == "Welcome to Biz Crusader"
    assert welcome.headers["List-Unsubscribe"].startswith("<mailto:news+unsubscribe-")
    http.post("/confirm", data={"token": yes})  # replayed: no second welcome
    replies.wait(2)
    assert len(sendgrid_server.to(JANE)) == 1


def test_expired_confirmation_link(
    http: httpx.Client, settings: Settings, clock: FixedClock
) -> None:
    add(settings, clock, JANE, Status.PENDING)
    old = confirm_token(settings, clock, JANE)
    clock.advance(timedelta(days=8))
    response = http.post("/confirm", data={"token": old})
    assert response.status_code == 400
    assert "expired" in response.text
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.PENDING


# --- SendGrid Inbound Parse -------------------------------------------------------------------


def raw_subscribe(sender: str = JANE) -> bytes:
    message = EmailMessage()
    message["From"] = f"Jane <{sender}>"
    message["To"] = "news+subscribe@bizcrusader.example"
    message["Subject"] = "hello"
    message["Message-ID"] = "<inbound-1@reader.example>"
    message.set_content("sign me up")
    return message.as_bytes()


def test_inbound_raw_mode(
    http: httpx.Client,
    settings: Settings,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    replies: Drains,
) -> None:
    fields = {
        "email": raw_subscribe().decode(),
        "to": "news+subscribe@bizcrusader.example",
        "from": JANE,
        "envelope": json.dumps({"to": ["news+subscribe@bizcrusader.example"], "from": JANE}),
        "SPF": "pass",
    }
    response = http.post(f"/inbound/{INBOUND_SECRET}", files=_multipart(fields))
    assert response.status_code == 200
    body = response.json()
    assert body["processed"] == 1
    assert body["actions"][0]["command"] == "subscribe"
    assert JANE not in response.text
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.PENDING
    replies.wait(1)
    [confirmation] = sendgrid_server.to(JANE)
    assert confirmation.subject == "Please confirm your subscription to Biz Crusader"
    # SendGrid retries a post: handled once
    again = http.post(f"/inbound/{INBOUND_SECRET}", files=_multipart(fields))
    assert again.json()["actions"][0]["command"] == "duplicate"
    replies.wait(2)
    assert len(sendgrid_server.to(JANE)) == 1


def test_inbound_message_over_the_size_cap_is_refused_and_changes_nothing(
    http: httpx.Client, settings: Settings, sendgrid_server: SendGridServer
) -> None:
    # under the whole-post cap, so the per-message field cap is what answers
    padding = "x" * (MAX_MESSAGE_BYTES + 1)
    fields = {
        "email": raw_subscribe().decode() + padding,
        "to": "news+subscribe@bizcrusader.example",
    }
    response = http.post(f"/inbound/{INBOUND_SECRET}", files=_multipart(fields))
    assert response.status_code == 400
    assert "exceeded maximum size" in response.text
    assert snapshot(settings) == {}
    assert sendgrid_server.to(JANE) == []


def test_inbound_default_mode_with_basic_auth_and_spf(
    http: httpx.Client,
    settings: Settings,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    replies: Drains,
) -> None:
    add(settings, clock, JANE)
    headers = (
        "Received: from mx.reader.example\n"
        "From: Jane <jane@reader.example>\n"
        "To: news@bizcrusader.example\n"
        "Subject: unsubscribe\n"
        "Message-ID: <inbound-default-1@reader.example>\n"
        'Content-Type: multipart/alternative; boundary="x"\n'
        "MIME-Version: 1.0\n"
    )
    fields = {
        "headers": headers,
        "text": "unsubscribe\n",
        "html": "<p>unsubscribe</p>",
        "from": "Jane <jane@reader.example>",
        "to": "news@bizcrusader.example",
        "subject": "unsubscribe",
        "envelope": json.dumps({"to": ["news@bizcrusader.example"], "from": JANE}),
        "SPF": "pass",
        "dkim": "{@reader.example : pass}",
    }
    response = http.post("/inbound", files=_multipart(fields), auth=("sendgrid", INBOUND_SECRET))
    assert response.status_code == 200, response.text
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.UNSUBSCRIBED  # SendGrid's SPF/DKIM verdict, aligned
    replies.wait(1)
    assert [d.subject for d in sendgrid_server.to(JANE)] == ["You have left Biz Crusader"]


def test_inbound_refuses_wrong_secrets(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    fields = {"email": raw_subscribe().decode()}
    assert http.post("/inbound/wrong", files=_multipart(fields)).status_code == 401
    unauthorized = http.post("/inbound", files=_multipart(fields), auth=("sendgrid", "nope"))
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"] == "Basic"
    assert http.post("/inbound", files=_multipart(fields)).status_code == 401
    assert readers(settings, clock).get(JANE) is None
    assert sendgrid_server.deliveries == []


def _multipart(fields: dict[str, str]) -> dict[str, tuple[None, str]]:
    return {name: (None, value) for name, value in fields.items()}


# --- SendGrid Event Webhook -------------------------------------------------------------------


def signed(
    key: ec.EllipticCurvePrivateKey, events: list[dict[str, Any]], at: datetime
) -> dict[str, Any]:
    return signed_request(key, json.dumps(events).encode(), int(at.timestamp()))


def test_event_webhook_records_and_is_idempotent(
    http: httpx.Client,
    settings: Settings,
    clock: FixedClock,
    event_key: ec.EllipticCurvePrivateKey,
) -> None:
    people = ["a@r.example", "b@r.example", "c@r.example", "d@r.example", "e@r.example"]
    people += ["f@r.example"]
    for person in people:
        add(settings, clock, person.capitalize())  # SendGrid's events say it lowercased
    events = [
        {"email": "a@r.example", "event": "bounce", "type": "bounce", "sg_event_id": "e1"},
        {"email": "b@r.example", "event": "spamreport", "sg_event_id": "e2"},
        {"email": "c@r.example", "event": "group_unsubscribe", "sg_event_id": "e3"},
        {
            "email": "d@r.example",
            "event": "dropped",
            "reason": "Bounced Address",
            "sg_event_id": "e4",
        },
        {"email": "e@r.example", "event": "bounce", "type": "blocked", "sg_event_id": "e5"},
        {"email": "f@r.example", "event": "delivered", "sg_event_id": "e6"},
        {"email": "f@r.example", "event": "open"},
    ]
    response = http.post("/events", **signed(event_key, events, clock.now()))
    assert response.status_code == 200
    assert response.json() == {"recorded": 4, "duplicates": 0, "ignored": 3}
    list_ = readers(settings, clock)
    statuses = {p: s.status for p in people if (s := list_.get(p)) is not None}
    assert statuses == {
        "a@r.example": Status.BOUNCED,
        "b@r.example": Status.COMPLAINED,
        "c@r.example": Status.UNSUBSCRIBED,
        "d@r.example": Status.BOUNCED,
        "e@r.example": Status.ACTIVE,
        "f@r.example": Status.ACTIVE,
    }
    a = list_.get("a@r.example")
    assert a is not None
    assert a.left_via is Source.SENDGRID
    before = snapshot(settings)
    again = http.post("/events", **signed(event_key, events[:4], clock.now()))
    assert again.json() == {"recorded": 0, "duplicates": 4, "ignored": 0}
    assert snapshot(settings) == before


def test_event_webhook_rejects_bad_signatures(
    http: httpx.Client, settings: Settings, clock: FixedClock, event_key: ec.EllipticCurvePrivateKey
) -> None:
    add(settings, clock, JANE)
    events = [{"email": JANE, "event": "spamreport", "sg_event_id": "x1"}]
    good = signed(event_key, events, clock.now())
    tampered = dict(good, content=good["content"].replace(b"spamreport", b"bounce"))
    assert http.post("/events", **tampered).status_code == 403
    other = signed(ec.generate_private_key(ec.SECP256R1()), events, clock.now())
    assert http.post("/events", **other).status_code == 403
    unsigned = {"content": good["content"], "headers": {"Content-Type": "application/json"}}
    assert http.post("/events", **unsigned).status_code == 403
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.ACTIVE


def test_home_page_is_accessible(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    check_page(response.text)


def test_event_webhook_refuses_a_replayed_old_batch(
    http: httpx.Client, settings: Settings, clock: FixedClock, event_key: ec.EllipticCurvePrivateKey
) -> None:
    add(settings, clock, JANE)
    events = [{"email": JANE, "event": "spamreport", "sg_event_id": "old-1"}]
    too_old = clock.now() - timedelta(seconds=MAX_EVENT_AGE + 60)
    too_new = clock.now() + timedelta(seconds=MAX_EVENT_AGE + 60)
    for stamp in (too_old, too_new):
        response = http.post("/events", **signed(event_key, events, stamp))
        assert response.status_code == 403
    missing = signed(event_key, events, clock.now())
    del missing["headers"]["X-Twilio-Email-Event-Webhook-Timestamp"]
    assert http.post("/events", **missing).status_code == 403
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.ACTIVE
    recent = clock.now() - timedelta(seconds=MAX_EVENT_AGE - 60)
    assert http.post("/events", **signed(event_key, events, recent)).status_code == 200
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.COMPLAINED


def _declared_too_big(base: str, path: str, length: int) -> bytes:
    """Announce ``length`` bytes, send a few: the answer must come before the body does."""
    host, _, port = base.removeprefix("http://").partition(":")
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\nx"
    )
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request.encode())
        return conn.recv(4096)


def _file_part_head(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="attachment1"; '
        'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()


def _chunks(total: int, head: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    yield head
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"a" * piece


@pytest.mark.parametrize("chunk", [1024, 64 * 1024], ids=["small-chunks", "large-chunks"])
@pytest.mark.parametrize("path", ["/unsubscribe", "/confirm", "/events", "/inbound/{secret}"])
def test_oversized_bodies_are_refused_while_streaming(
    base: str, http: httpx.Client, settings: Settings, clock: FixedClock, path: str, chunk: int
) -> None:
    url = path.format(secret=INBOUND_SECRET)
    big = 60 * 1024 * 1024  # over every cap, and never sent whole
    assert _declared_too_big(base, url, big).startswith(b"HTTP/1.1 413 ")
    # no Content-Length: an attachment (Inbound Parse spools those, unbounded per part) or a
    # form field that never ends
    boundary = "b0undary"
    kind, head = (
        (f"multipart/form-data; boundary={boundary}", _file_part_head(boundary))
        if url.startswith("/inbound")
        else ("application/x-www-form-urlencoded", b"token=")
    )
    # the chunk size decides how the server's reads fall: whatever they are, the body cap
    # answers (413), never a form parser's own field limit (400)
    body = _chunks(big, head, chunk)
    chunked = http.post(url, content=body, headers={"Content-Type": kind})
    assert chunked.status_code == 413
    assert chunked.headers["x-content-type-options"] == "nosniff"
    assert snapshot(settings) == {}


def test_small_form_cap_still_takes_a_one_click_unsubscribe(
    http: httpx.Client, settings: Settings, clock: FixedClock
) -> None:
    add(settings, clock, JANE)
    url = "/unsubscribe?token=" + token(Purpose.UNSUBSCRIBE, JANE, clock)
    padded = "List-Unsubscribe=One-Click&pad=" + "p" * (MAX_FORM_BODY + 1)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert http.post(url, content=padded, headers=form).status_code == 413
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.ACTIVE
    done = http.post(url, content="List-Unsubscribe=One-Click", headers=form)
    assert done.status_code == 200
    reader = readers(settings, clock).get(JANE)
    assert reader is not None
    assert reader.status is Status.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nowhere"), ("GET", "/inbound"), ("POST", "/inbound/wrong"), ("POST", "/events")],
)
def test_every_response_carries_the_security_headers(
    http: httpx.Client, method: str, path: str
) -> None:
    response = http.request(method, path, content=b"[]")
    assert response.status_code >= 400
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
