"""``crusader-mail serve`` against clients that misbehave, over real HTTP on 127.0.0.1: clients
trickling a head or a body, a Host header pointing elsewhere, requests uvicorn itself refuses,
an uncaught error, and signed JSON nested deep enough to overflow a recursive parser."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crusader_mail.web.sendgrid_hooks import MAX_JSON_DEPTH
from tests.support.commands import serve_process, signed_request

PUBLIC_UNSUBSCRIBE = "https://mail.bizcrusader.example/unsubscribe"
PUBLIC_CONFIRM = "https://mail.bizcrusader.example/confirm"
INBOUND_SECRET = "inbound-secret-abc123"
SAFETY_NET = 60.0  # seconds: not a measurement, only the end of a test that would hang


def _address(base: str) -> tuple[str, int]:
    host, _, port = base.removeprefix("http://").partition(":")
    return host, int(port)


def _security_headers(answer: str | bytes) -> bool:
    text = answer.decode("latin-1") if isinstance(answer, bytes) else answer
    head = text.split("\r\n\r\n", 1)[0].lower()
    return all(
        line in head
        for line in (
            "referrer-policy: no-referrer",
            "x-content-type-options: nosniff",
            "content-security-policy: default-src 'none'",
        )
    )


def _read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    conn.settimeout(SAFETY_NET)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[str]:
    """A server giving clients one second for a head and one for a body."""
    env = {
        "CRUSADER_MAIL_SERVER__HEADER_TIMEOUT": "1",
        "CRUSADER_MAIL_SERVER__BODY_TIMEOUT": "1",
    }
    with serve_process(tmp_path, env) as base:
        yield base


# --- reads are bounded --------------------------------------------------------------------------


class Trickler:
    """One connection sending a request a byte at a time, for as long as the server lets it."""

    def __init__(self, address: tuple[str, int], opening: bytes) -> None:
        self.conn = socket.create_connection(address, timeout=10)
        self.conn.setblocking(False)
        self.pending = opening
        self.closed = False

    def step(self) -> None:
        """Send the next byte (all of ``opening`` first); notice when the server hung up."""
        try:
            if not self.conn.recv(65536):  # (an answer, if any, is read and dropped)
                self.closed = True
                return
        except BlockingIOError:
            pass  # nothing to read: still open
        except OSError:
            self.closed = True
            return
        try:
            if self.pending:
                sent = self.conn.send(self.pending)
                self.pending = self.pending[sent:]
            else:
                self.conn.send(b"a")
        except BlockingIOError:
            return
        except OSError:  # reset or broken pipe: the server closed it
            self.closed = True


def test_clients_trickling_heads_or_bodies_are_cut_off_while_others_are_served(
    limited: str,
) -> None:
    address = _address(limited)
    heads = [Trickler(address, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(500)]
    body_head = (
        b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntoken="
    )
    bodies = [Trickler(address, body_head) for _ in range(100)]
    silent = [socket.create_connection(address, timeout=SAFETY_NET) for _ in range(100)]
    everyone = heads + bodies
    with httpx.Client(base_url=limited, timeout=10) as http:
        deadline = time.monotonic() + SAFETY_NET
        while not all(t.closed for t in everyone) and time.monotonic() < deadline:
            for trickler in everyone:
                if not trickler.closed:
                    trickler.step()
            assert http.get("/").status_code == 200  # served meanwhile
            time.sleep(0.1)
    open_left = sum(not t.closed for t in everyone)
    assert open_left == 0, f"{open_left} trickling connections still open"
    for conn in silent:  # connected and never said a word: closed without an answer
        assert _read_all(conn) == b""
    for conn in silent + [t.conn for t in everyone]:
        conn.close()


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (b"GET /unsubscribe?token=abc HTTP/1.1\r\nHost: x\r\n", 408),  # the head never ends
        (
            b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntoken=",
            408,  # nor the body
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (20 * 1024), 400),  # past 16 KiB
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (20 * 1024) + b"\r\n\r\n", 400),
    ],
    ids=["head-unfinished", "body-unfinished", "malformed", "oversized-head", "oversized-whole"],
)
def test_requests_the_server_answers_itself_carry_the_security_headers(
    limited: str, sent: bytes, status: int
) -> None:
    with socket.create_connection(_address(limited), timeout=10) as conn:
        conn.sendall(sent)
        answer = _read_all(conn)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert _security_headers(answer), answer


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_request(
    limited: str,
) -> None:
    with socket.create_connection(_address(limited), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"</html>" not in first:
            first += conn.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and the rest never comes
        assert _read_all(conn).startswith(b"HTTP/1.1 408 ")


def test_pipelined_requests_are_each_answered(limited: str) -> None:
    with socket.create_connection(_address(limited), timeout=10) as conn:
        conn.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answers = _read_all(conn)
    assert answers.count(b"HTTP/1.1 200 ") == 2, answers


# --- redirects stay on the configured site ------------------------------------------------------


@pytest.mark.parametrize("configured", [True, False], ids=["public-urls", "no-urls"])
def test_trailing_slash_redirects_never_follow_the_host_header(
    tmp_path: Path, configured: bool
) -> None:
    env = (
        {
            "CRUSADER_MAIL_NEWSLETTER__UNSUBSCRIBE_URL": PUBLIC_UNSUBSCRIBE,
            "CRUSADER_MAIL_NEWSLETTER__CONFIRM_URL": PUBLIC_CONFIRM,
        }
        if configured
        else {}
    )
    unsubscribe = PUBLIC_UNSUBSCRIBE if configured else "/unsubscribe"
    confirm = PUBLIC_CONFIRM if configured else "/confirm"
    evil = {"Host": "evil.example"}
    with (
        serve_process(tmp_path, env) as base,
        httpx.Client(base_url=base, timeout=10, follow_redirects=False) as http,
    ):
        page = http.get("/unsubscribe/?token=abc.def", headers=evil)
        assert page.status_code == 307
        assert page.headers["location"] == f"{unsubscribe}?token=abc.def"
        assert _security_headers(_head_of(page))
        one_click = http.post("/unsubscribe/?token=abc", headers=evil, content=b"")
        assert one_click.status_code == 307
        assert one_click.headers["location"] == f"{unsubscribe}?token=abc"
        assert http.get("/confirm/", headers=evil).headers["location"] == confirm
        for path in ("/events/", "/inbound/x/", "/unsubscribe//"):
            assert http.get(path, headers=evil).status_code == 404, path


def _head_of(response: httpx.Response) -> str:
    lines = [f"HTTP/1.1 {response.status_code}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


# --- the security headers on every answer -------------------------------------------------------


def test_an_uncaught_error_answers_500_with_the_security_headers(tmp_path: Path) -> None:
    broken = tmp_path / "no-templates"  # the pages' templates are missing: every page fails
    broken.mkdir()
    with (
        serve_process(tmp_path, templates=broken) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        for path in ("/", "/unsubscribe?token=abc"):
            answer = http.get(path)
            assert answer.status_code == 500
            assert _security_headers(_head_of(answer)), answer.headers
            assert "Traceback" not in answer.text


# --- signed JSON nested too deep ----------------------------------------------------------------


@pytest.fixture
def event_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hooks(tmp_path: Path, event_key: ec.EllipticCurvePrivateKey) -> Iterator[httpx.Client]:
    public = event_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    env = {
        "CRUSADER_MAIL_SERVER__EVENT_PUBLIC_KEY": base64.b64encode(public).decode(),
        "CRUSADER_MAIL_SERVER__INBOUND_SECRET": INBOUND_SECRET,
    }
    with (
        serve_process(tmp_path, env) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        yield http


def _nested(depth: int) -> bytes:
    """A batch of one event whose ``unique_args`` nest down to ``depth`` levels in all (the
    string at the bottom has brackets too: they do not count)."""
    inner: Any = "end ]]]] {{{"
    for _ in range(depth - 2):
        inner = [inner]
    return json.dumps(
        [
            {
                "sg_event_id": "ev-deep",
                "event": "bounce",
                "email": "jane@reader.example",
                "unique_args": inner,
            }
        ]
    ).encode()


def test_signed_event_batches_nested_too_deep_are_refused_with_400(
    hooks: httpx.Client, event_key: ec.EllipticCurvePrivateKey
) -> None:
    flood = b"[" * 200_000 + b"]" * 200_000  # json.loads: RecursionError
    for body in (flood, _nested(MAX_JSON_DEPTH + 1)):
        answer = hooks.post("/events", **signed_request(event_key, body, int(time.time())))
        assert answer.status_code == 400, answer.text
        assert "nested" in answer.json()["error"]
        assert _security_headers(_head_of(answer))
    fine = hooks.post(
        "/events", **signed_request(event_key, _nested(MAX_JSON_DEPTH), int(time.time()))
    )
    assert fine.status_code == 200, fine.text
    assert fine.json() == {"recorded": 1, "duplicates": 0, "ignored": 0}


def test_inbound_answer_masks_message_ids_and_survives_a_deep_envelope(
    hooks: httpx.Client,
) -> None:
    message = EmailMessage()
    message["From"] = "Jane <jane.doe@reader.example>"
    message["To"] = "news@example.com"
    message["Subject"] = "Great post!"
    message["Message-ID"] = "<jane.doe.1234@reader.example>"
    message.set_content("Thanks for the issue.\n")
    fields = {
        "email": message.as_string(),
        "envelope": "[" * 200_000 + "]" * 200_000,
        "to": "news@example.com",
    }
    files = {name: (None, value) for name, value in fields.items()}
    answer = hooks.post(f"/inbound/{INBOUND_SECRET}", files=files)
    assert answer.status_code == 200, answer.text
    [action] = answer.json()["actions"]
    assert action["message_id"] == "<j•••@reader.example>"
    assert "jane.doe" not in answer.text
