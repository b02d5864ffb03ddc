"""Consent on the web that cannot be forged, over real HTTP (uvicorn on 127.0.0.1), replies
through the SendGrid peer: Inbound Parse never trusts an ``Authentication-Results`` header in
the message; a confirmation link is void once the reader changed; a reader who left comes back
only by their own confirmation; an issue's unsubscribe link works any number of times, for good.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from peers.sendgrid_server import Delivery, SendGridServer, sendgrid_server

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.client import client_factory
from crusader_mail.models import Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from tests.support.inbox import TRUSTED, make_settings
from tests.support.sending import make_issue, send_issue
from tests.support.web import eventually, web_app

__all__ = ["sendgrid_server"]

SECRET_PATH = "/inbound/inbound-secret-abc123"
CAROL = "carol@reader.example"
SAM = "sam@reader.example"


@pytest.fixture
def settings(clean_env: Path, tmp_path: Path, sendgrid_server: SendGridServer) -> Settings:
    return make_settings(
        tmp_path,
        sendgrid={"api_key": sendgrid_server.api_key, "api_url": sendgrid_server.url},
        server={
            "trusted_authserv_id": TRUSTED,
            "inbound_secret": "inbound-secret-abc123",
            "same_host": True,
        },
    )


@pytest.fixture
def http(settings: Settings, clock: FixedClock) -> Iterator[httpx.Client]:
    with web_app(settings, clock) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def status(settings: Settings, clock: FixedClock, email: str) -> Status | None:
    reader = open_store(settings, clock).roster.get(email)
    return reader.status if reader else None


def raw(sender: str, subject: str, body: str, message_id: str, *head: str) -> str:
    message = EmailMessage()
    for line in head:
        name, _, value = line.partition(": ")
        message[name] = value
    message["From"] = sender
    message["To"] = "news@bizcrusader.example"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content(body)
    return message.as_string()


def inbound(http: httpx.Client, fields: dict[str, str]) -> list[dict[str, str]]:
    """Post to Inbound Parse: the actions of the answer."""
    response = http.post(SECRET_PATH, files={k: (None, v) for k, v in fields.items()})
    assert response.status_code == 200, response.text
    actions: list[dict[str, str]] = response.json()["actions"]
    return actions


def link_token(delivery: Delivery, path: str) -> str:
    text = "\n".join(value for _type, value in delivery.content)
    match = re.search(rf"https://mail\.bizcrusader\.example/{path}\?token=([a-z2-7]{{29}})", text)
    assert match, text
    return match.group(1)


# --- 2. Inbound Parse: SendGrid's verdict only ------------------------------------------------


FORGED_AUTH = (
    f"Authentication-Results: {TRUSTED}; dkim=pass header.d=reader.example; "
    "spf=pass smtp.mailfrom=carol@reader.example; dmarc=pass header.from=reader.example"
)


def test_inbound_parse_never_trusts_an_authentication_results_header_in_the_message(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    with open_store(settings, clock).roster.edit() as roster:
        roster.add(CAROL, via=Source.CLI)
    envelope = json.dumps({"to": ["news@bizcrusader.example"], "from": "eve@attacker.example"})
    # raw mode: SendGrid says SPF failed and no DKIM of reader.example passed
    message = raw(f"Carol <{CAROL}>", "unsubscribe", "unsubscribe\n", "<f1@x>", FORGED_AUTH)
    [action] = inbound(
        http,
        {
            "email": message,
            "envelope": envelope,
            "SPF": "fail",
            "dkim": "{@attacker.example : pass}",
        },
    )
    assert (action["command"], action["result"]) == (
        "unsubscribe",
        "c•••@reader.example not authenticated; asked to confirm leaving (reply queued)",
    )
    # default mode: the forged header among the parsed headers
    headers = f"{FORGED_AUTH}\nFrom: Carol <{CAROL}>\nTo: news@bizcrusader.example\n"
    headers += "Subject: stop\nMessage-ID: <f2@x>\n"
    inbound(http, {"headers": headers, "text": "stop\n", "envelope": envelope, "SPF": "softfail"})
    assert status(settings, clock, CAROL) is Status.ACTIVE
    eventually(lambda: len(sendgrid_server.to(CAROL)) == 1)  # one "confirm you want to leave"
    [asked] = sendgrid_server.to(CAROL)
    assert asked.subject == "Confirm you want to leave Biz Crusader"
    # SendGrid's own verdict, aligned with From, still counts
    message = raw(f"Carol <{CAROL}>", "unsubscribe", "unsubscribe\n", "<f3@x>")
    envelope = json.dumps({"to": ["news@bizcrusader.example"], "from": CAROL})
    inbound(http, {"email": message, "envelope": envelope, "SPF": "pass"})
    assert status(settings, clock, CAROL) is Status.UNSUBSCRIBED


# --- 6 and 7. a reader who left; tokens void once the reader changed --------------------------


def test_an_old_confirmation_link_cannot_bring_back_a_reader_who_left(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    envelope = json.dumps({"to": ["news+subscribe@bizcrusader.example"], "from": SAM})
    subscribe = raw(f"Sam <{SAM}>", "subscribe", "please\n", "<s1@reader.example>")
    inbound(http, {"email": subscribe, "envelope": envelope})
    eventually(lambda: len(sendgrid_server.to(SAM)) == 1)
    first = link_token(sendgrid_server.to(SAM)[0], "confirm")
    assert http.post("/confirm", data={"token": first}).status_code == 200
    assert status(settings, clock, SAM) is Status.ACTIVE
    # an issue goes out; Sam leaves with its one-click link
    send_issue(make_issue(), settings, clock, client_factory(settings), dry_run=False)
    issue = next(d for d in sendgrid_server.to(SAM) if d.subject == make_issue().subject)
    one_click = issue.headers["List-Unsubscribe"].split(", <")[1].rstrip(">")
    leave = parse_qs(urlsplit(one_click).query)["token"][0]
    clock.advance(timedelta(days=1))
    assert http.post("/unsubscribe", params={"token": leave}, content=b"").status_code == 200
    assert status(settings, clock, SAM) is Status.UNSUBSCRIBED
    # a forger asks for Sam again (a fresh confirmation goes to Sam); the old link is dead
    clock.advance(timedelta(days=1))
    forged = raw(f"Sam <{SAM}>", "subscribe", "x\n", "<forged@attacker.example>")
    inbound(http, {"email": forged, "envelope": envelope})
    assert status(settings, clock, SAM) is Status.UNSUBSCRIBED
    assert http.post("/confirm", data={"token": first}).status_code == 400
    assert http.get("/confirm", params={"token": first}).status_code == 400
    assert status(settings, clock, SAM) is Status.UNSUBSCRIBED
    # Sam's own new link brings Sam back, with a new subscription
    eventually(lambda: len(sendgrid_server.to(SAM)) == 4)  # confirm, welcome, issue, confirm
    fresh = link_token(sendgrid_server.to(SAM)[-1], "confirm")
    page = http.get("/confirm", params={"token": fresh})
    assert page.status_code == 200
    assert 'action="/confirm"' in page.text
    assert http.post("/confirm", data={"token": fresh}).status_code == 200
    reader = open_store(settings, clock).roster.get(SAM)
    assert reader is not None
    assert (reader.status, reader.subscribed_at, reader.left_at) == (
        Status.ACTIVE,
        clock.now(),
        None,
    )
    assert http.post("/confirm", data={"token": fresh}).status_code == 400  # spent
    history = list(open_store(settings, clock).roster.history(SAM))
    assert [(e.action.value, e.via.value) for e in history] == [
        ("request", "email"),
        ("confirm", "web"),
        ("unsubscribe", "web"),
        ("confirm", "web"),
    ]
    # the unsubscribe link of the issue works again, and still does a year later
    for days in (0, 400):
        clock.advance(timedelta(days=days))
        assert http.post("/unsubscribe", params={"token": leave}, content=b"").status_code == 200
        assert status(settings, clock, SAM) is Status.UNSUBSCRIBED
