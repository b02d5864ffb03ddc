"""End to end: one PostgreSQL database shared by a server and a scheduled job in two checkouts.

Two clones of one git remote stand for the server's checkout and the GitHub Action's, both
with ``CRUSADER_MAIL_DATABASE_URL`` naming one fresh database (``db upgrade`` is run from the
server's checkout). The editor imports the readers and the Action sends the first issue (``run
--include-backlog 1``, the real command, to the loopback SendGrid). Then, over real HTTP to
``crusader-mail serve`` running in the server's checkout: a one-click unsubscribe (RFC 8058, to
the URL in that reader's ``List-Unsubscribe``), a reader leaving by the ``mailto:`` of theirs
through Inbound Parse, a new reader subscribing by mail through Inbound Parse and confirming on
the web page of the link in their confirmation, and a signed bounce event. The next ``run`` in
the Action's checkout sends the next post to exactly the readers left and the new one, and
leaves nothing in its checkout to commit.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from peers.feed_server import FeedServer
from peers.sendgrid_server import Delivery, SendGridServer

from tests.support.feeds import FEED_SERVER_TOML
from tests.support.serving import CLI, free_port, serve_process

REPO = Path(__file__).resolve().parent.parent
SECRET = "shared-database-secret-0123456789"
INBOUND_SECRET = "inbound-secret-0123456789"
READERS = [
    "ann@example.com",  # one click on the server
    "Bob.Smith@Example.com",  # mails the mailto: of his List-Unsubscribe (Inbound Parse)
    "carol@example.org",  # bounces (a signed event)
    "dan@example.org",
    "Eve@example.net",
    "fay@example.net",
]
NEWCOMER = "Nina@Example.net"  # subscribes by mail, confirms on the web
STAYING = {"dan@example.org", "Eve@example.net", "fay@example.net", "Nina@example.net"}
WAIT = 60.0  # seconds: a safety net for what the server does after answering


def rss(count: int) -> bytes:
    start = datetime(2026, 6, 5, 9, 0, tzinfo=UTC)
    items = "".join(
        f"<item><title>Lesson {n}: follow up with client {n}</title>"
        f"<link>https://blog.example/{n}/</link>"
        f'<guid isPermaLink="false">https://blog.example/?p={n}</guid>'
        f"<pubDate>{format_datetime(start + timedelta(days=7 * n))}</pubDate>"
        f"<description>{escape('Follow up with your clients. ' * 20)}</description></item>"
        for n in range(count, 0, -1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Blog</title>'
        f"<link>https://blog.example/</link><description>d</description>{items}</channel></rss>"
    ).encode()


class Checkouts:
    """The remote, the server's checkout and the Action's, and their environments."""

    def __init__(
        self, root: Path, database_url: str, feeds: FeedServer, api: SendGridServer, port: int
    ) -> None:
        self.root = root
        self.api = api
        self.server = root / "server"
        self.action = root / "action"
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("CRUSADER_MAIL_", "SENDGRID_"))
        }
        self.env.update(
            CRUSADER_MAIL_DATABASE_URL=database_url,
            CRUSADER_MAIL_SECRET_KEY=SECRET,
            CRUSADER_MAIL_SERVER__INBOUND_SECRET=INBOUND_SECRET,
            SENDGRID_API_KEY=api.api_key,
        )
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        editor = root / "editor"
        editor.mkdir()
        (editor / ".gitignore").write_text((REPO / ".gitignore").read_text())
        (editor / "crusader-mail.toml").write_text(
            f'feeds = ["{feeds.url("/feed.xml")}"]\n'
            f'templates_dir = "{REPO / "templates"}"\n'
            "[newsletter]\n"
            'name = "Blog"\nsite_url = "https://blog.example"\n'
            'from_email = "news@blog.example"\npostal_address = "1 Test Street"\n'
            f'unsubscribe_url = "http://127.0.0.1:{port}/unsubscribe"\n'
            f'confirm_url = "http://127.0.0.1:{port}/confirm"\n'
            "[sendgrid]\n"
            f'api_url = "{api.url}"\nbackoff_base = 0.01\ntimeout = 10\n'
            "[server]\n"
            f'event_public_key = "{base64.b64encode(public).decode()}"\n' + FEED_SERVER_TOML,
            encoding="utf-8",
        )
        remote = root / "remote.git"
        self.git(root, "init", "-q", "--bare", "-b", "main", str(remote))
        self.git(editor, "init", "-q", "-b", "main")
        self.git(editor, "add", "-A")
        self.git(editor, "-c", "user.name=e", "-c", "user.email=e@x.example", "commit", "-qm", "i")
        self.git(editor, "push", "-q", str(remote), "main")
        for checkout in (self.server, self.action):
            self.git(root, "clone", "-q", str(remote), str(checkout))

    def git(self, where: Path, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=where, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def cli(self, where: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], cwd=where, env=self.env, capture_output=True, text=True, timeout=120
        )

    def ok(self, where: Path, *args: str) -> str:
        done = self.cli(where, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def issue(self, subject: str) -> list[Delivery]:
        return [delivery for delivery in self.api.deliveries if delivery.subject == subject]

    def wait_for(self, to: str, subject: str) -> Delivery:
        """The first message SendGrid received for ``to`` alone with ``subject`` in its
        subject (the server sends after it answered: wait for it)."""
        deadline = time.monotonic() + WAIT
        while True:
            found = [d for d in self.api.deliveries if d.to == (to,) and subject in d.subject]
            if found:
                return found[0]
            assert time.monotonic() < deadline, "the server never sent it"
            time.sleep(0.05)

    def signed(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        body = json.dumps(events).encode()
        stamp = str(int(time.time()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "content": body,
            "headers": {
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            },
        }


def inbound(sender: str, to: str, message_id: str) -> dict[str, tuple[None, str]]:
    """An Inbound Parse post (raw mode) of a short mail from ``sender`` to ``to``."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = "hello"
    mail["Message-ID"] = message_id
    mail.set_content("please")
    address = re.sub(r".*<|>.*", "", sender)
    fields = {
        "email": mail.as_string(),
        "to": to,
        "from": sender,
        "envelope": json.dumps({"to": [to], "from": address}),
        "SPF": "pass",
    }
    return {name: (None, value) for name, value in fields.items()}


def list_unsubscribe(delivery: Delivery) -> tuple[str, str]:
    """(the https one-click URL, the mailto address) of a reader's List-Unsubscribe."""
    value = delivery.headers["List-Unsubscribe"]
    [mailto] = re.findall(r"<mailto:([^>]+)>", value)
    [url] = re.findall(r"<(http[^>]+)>", value)
    return url, mailto


@pytest.fixture
def checkouts(
    tmp_path: Path, empty_database_url: str, feed_server: FeedServer
) -> Iterator[Checkouts]:
    feed_server.add("/feed.xml", rss(1), etag="v1")
    with SendGridServer() as api:
        yield Checkouts(tmp_path, empty_database_url, feed_server, api, free_port())


def test_what_the_server_records_reaches_the_next_run_in_the_other_checkout(
    checkouts: Checkouts, feed_server: FeedServer
) -> None:
    site = checkouts
    assert "schema upgraded" in site.ok(site.server, "db", "upgrade")
    (site.root / "readers.csv").write_text("email\n" + "\n".join(READERS) + "\n")
    imported = site.ok(site.action, "subscribers", "import", str(site.root / "readers.csv"))
    assert "added 6 readers (active)" in imported.splitlines()
    first = site.ok(site.action, "run", "--include-backlog", "1")
    issue_1 = site.issue("Lesson 1: follow up with client 1")
    assert sorted(to for d in issue_1 for to in d.to) == sorted(
        ["ann@example.com", "Bob.Smith@example.com", *READERS[2:]]
    ), first
    mail_of = {delivery.to[0]: delivery for delivery in issue_1}

    port = int(re.sub(r".*:(\d+)/.*", r"\1", list_unsubscribe(mail_of["ann@example.com"])[0]))
    with (
        serve_process(site.server, site.env, port) as served,
        httpx.Client(base_url=served.url, timeout=30) as http,
    ):
        # ann: the one-click POST of her mail client, to the URL in her List-Unsubscribe
        url, _mailto = list_unsubscribe(mail_of["ann@example.com"])
        clicked = http.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert clicked.status_code == 200
        assert "You are unsubscribed" in clicked.text
        # Bob mails the mailto: of his List-Unsubscribe, from his address in another spelling
        _url, mailto = list_unsubscribe(mail_of["Bob.Smith@example.com"])
        post = inbound("Bob <bob.smith@EXAMPLE.com>", mailto, "<bob-1@example.com>")
        left = http.post(f"/inbound/{INBOUND_SECRET}", files=post)
        assert left.status_code == 200
        assert left.json()["processed"] == 1
        # Nina subscribes by mail, then confirms on the page of the link she was sent
        post = inbound(f"Nina <{NEWCOMER}>", "news+subscribe@blog.example", "<nina-1@x.example>")
        joined = http.post(f"/inbound/{INBOUND_SECRET}", files=post)
        assert joined.json()["actions"][0]["command"] == "subscribe"
        asked = site.wait_for("Nina@example.net", "Please confirm your subscription")
        [link] = {m for _type, body in asked.content for m in re.findall(r"http\S+token=\w+", body)}
        page = http.get(link)
        assert page.status_code == 200
        assert "Yes, subscribe me" in page.text
        token = link.rsplit("token=", 1)[1]
        confirmed = http.post("/confirm", data={"token": token})
        assert confirmed.status_code == 200
        assert "You are subscribed" in confirmed.text
        # carol's mail bounced: SendGrid's signed event, the address as SendGrid writes it
        events = [{"email": "carol@example.org", "event": "bounce", "sg_event_id": "ev-1"}]
        recorded = http.post("/events", **site.signed(events))
        assert recorded.json() == {"recorded": 1, "duplicates": 0, "ignored": 0}
        for reader, subject in [
            ("Bob.Smith@example.com", "You have left Blog"),
            ("Nina@example.net", "Welcome to Blog"),
        ]:  # each reply went out from the server after its answer (ann's page was hers)
            site.wait_for(reader, subject)
        # ann left with one click: the page was her goodbye, no mail follows it
        assert not [
            d for d in site.api.deliveries if d.to == ("ann@example.com",) and "left" in d.subject
        ]
    assert "Traceback" not in served.stderr
    # ann left on the web: the page was her goodbye, no mail follows it
    assert [d.subject for d in site.api.deliveries if d.to == ("ann@example.com",)] == [
        issue_1[0].subject
    ]

    feed_server.add("/feed.xml", rss(2), etag="v2")
    second = site.cli(site.action, "run")
    assert second.returncode == 0, second.stderr
    issue_2 = site.issue("Lesson 2: follow up with client 2")
    assert sorted(to for d in issue_2 for to in d.to) == sorted(STAYING)
    assert site.git(site.action, "status", "--porcelain") == ""  # nothing to commit
    assert site.git(site.server, "status", "--porcelain") == ""
