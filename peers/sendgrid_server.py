"""A loopback SendGrid v3 look-alike, for tests and benches (127.0.0.1 only).

It behaves as ``../shared/sendgrid`` (README + mail-send-schema.json) documents the v3 API:

- ``POST /v3/mail/send``: ``Authorization: Bearer <api_key>`` or 401 (a key in
  ``forbidden_keys``: 403); over ``max_body`` bytes (30 MB): 413; not JSON or invalid: 400 with
  ``{"errors": [{"message", "field", "help"}]}``. Checked: the schema's required fields, types,
  ``maxItems``/``minLength``/``maxLength``/``uniqueItems`` (read from the schema file when it
  is there; the README's quirk: top-level ``custom_args`` is an object), and the documented
  limits: at most 1000 recipients, no address twice in a request, a subject (top level or in
  every personalization), ``text/plain`` first, ``substitutions`` ≤ 10,000 bytes and string
  values, ``custom_args`` < 10,000 bytes, a ``from``; stricter than SendGrid documents: an
  unknown key inside ``tracking_settings`` is a 400 (``subscription_tracking.enabled`` for
  ``enable`` would otherwise switch nothing on, silently). Accepted: 202 with ``X-Message-Id``;
  with ``mail_settings.sandbox_mode.enable``: 200, nothing delivered.
- Subscription tracking (``tracking_settings.subscription_tracking.enable``), as SendGrid does
  it: each recipient gets their own unsubscribe link, put where ``substitution_tag`` stands
  (else appended to the bodies), and a ``List-Unsubscribe`` + ``List-Unsubscribe-Post``
  one-click header (:attr:`Delivery.sendgrid_headers`). ``POST`` to that link (RFC 8058) puts
  the address on the global ``unsubscribes`` list, as a click on SendGrid's link does.
- ``GET /v3/suppression/{unsubscribes,bounces,spam_reports,invalid_emails}?limit=&offset=``
  (limit 1..500) and ``GET /v3/asm/groups/{id}/suppressions`` (an array of addresses).
- Faults for the next requests (:meth:`SendGridServer.fail`): a status (429 with
  ``X-RateLimit-Reset``, 500, 503 …) with a given error message and field (SendGrid's documented
  ones in :data:`DOCUMENTED`, field errors in :data:`FIELD_ERRORS`), ``"drop"`` (read the request, close without an answer)
  or ``"drop_after_accept"`` (deliver, then close without an answer); ``delay`` slows every
  mail send down (for kill tests).
- HTTP/1.1 with keep-alive, as SendGrid: ``connections`` counts the TCP connections accepted,
  ``max_in_flight`` the most mail sends handled at once. ``latency`` stands for a network round
  trip: every request is answered that much later, and every new connection waits it once (its
  handshake). ``gather`` makes the first mail sends wait (up to :data:`GATHER_WAIT` s) until
  that many are in flight at once: a test of requests in flight that needs no timing.
  ``check_every`` validates one mail send in that many (the first always; benches, so the
  peer's CPU stays small); the others are counted only.

What was accepted is kept per personalization (:class:`Delivery`), so tests can check that each
reader got one message and saw no other address (:meth:`Delivery.rendered`). With
``record=False`` (benches) only counts are kept.

Use the ``sendgrid_server`` fixture, or run ``python -m peers.sendgrid_server`` (prints
``PORT <n>``; the bench runs it in its own process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "shared" / "sendgrid" / "mail-send-schema.json"
API_KEY = "SG.loopback-test-key"
MAX_BODY = 30 * 1024 * 1024
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTIONS = 10_000
MAX_CUSTOM_ARGS = 10_000
SUPPRESSION_LISTS = ("unsubscribes", "bounces", "spam_reports", "invalid_emails")
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
UNSUBSCRIBE_PATH = "/wf/unsubscribe"  # where subscription tracking's links point
GATHER_WAIT = 10.0  # seconds a mail send waits for ``gather`` to be in flight at once
IDLE = 60.0  # seconds a kept-alive connection may stay silent before the peer closes it


# SendGrid's refusals for :meth:`SendGridServer.fail`, as (status, message, field). The wording
# of these is SendGrid's: the OpenAPI description (``access forbidden``, ``authorization
# required``, ``content too large``, ``too many requests``), error 60222's page (the unverified
# sender) and the "4XX API Errors and Troubleshooting Suggestions" article (the rest).
DOCUMENTED: dict[str, tuple[int, str, str | None]] = {
    "unverified_sender": (
        403,
        "The from address does not match a verified Sender Identity. Mail cannot be sent until "
        "this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/"
        "sender-identity/ to see the Sender Identity requirements",
        None,
    ),
    "forbidden": (403, "access forbidden", None),
    "not_authorized": (401, "Authenticated user is not authorized", None),
    "authorization_required": (401, "authorization required", None),
    "bad_key": (401, "The provided authorization grant is invalid, expired, or revoked", None),
    "credits": (401, "Maximum credits exceeded", None),
    "too_large": (413, "content too large", None),
    "rate_limited": (429, "too many requests", None),
}
# 400s about one field of the request: SendGrid names the field; the messages are this peer's.
FIELD_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "sandbox": (
        400,
        "The mail_settings.sandbox_mode.enable field must be a boolean.",
        "mail_settings.sandbox_mode.enable",
    ),
    "asm_group": (
        400,
        "The asm.group_id field must be one of your unsubscribe groups.",
        "asm.group_id",
    ),
    "bad_from": (400, "The from.email field must be a valid email address.", "from.email"),
}


def error_body(message: str, field: str | None = None, help_url: str | None = HELP) -> bytes:
    return json.dumps({"errors": [{"message": message, "field": field, "help": help_url}]}).encode()


@dataclass(frozen=True)
class Delivery:
    """One personalization SendGrid accepted: the message one envelope gets."""

    message_id: str
    request: int  # index of the accepted request
    recipients: tuple[str, ...]  # to + cc + bcc of this personalization
    to: tuple[str, ...]
    subject: str
    headers: dict[str, str]
    substitutions: dict[str, str]
    content: tuple[tuple[str, str], ...]  # (type, value) in order
    categories: tuple[str, ...]
    custom_args: dict[str, str]
    asm: dict[str, Any] | None
    unsubscribe_link: str | None = None  # SendGrid's own (subscription tracking)
    tracking_tag: str | None = None  # where the body asked SendGrid to put that link

    @property
    def sendgrid_headers(self) -> dict[str, str]:
        """The headers SendGrid adds itself: its one-click unsubscribe (subscription tracking)."""
        if self.unsubscribe_link is None:
            return {}
        return {
            "List-Unsubscribe": f"<{self.unsubscribe_link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def _fill(self, text: str) -> str:
        for key, value in self.substitutions.items():
            text = text.replace(key, value)
        if self.unsubscribe_link is not None and self.tracking_tag:
            text = text.replace(self.tracking_tag, self.unsubscribe_link)
        return text

    def rendered(self) -> str:
        """Everything the recipient can see: headers (To, Subject, ours, then SendGrid's) and
        the bodies (with SendGrid's link where it goes)."""
        lines = [f"To: {', '.join(self.to)}", f"Subject: {self._fill(self.subject)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines += [f"{name}: {value}" for name, value in self.sendgrid_headers.items()]
        for _type, value in self.content:
            body = self._fill(value)
            if self.unsubscribe_link is not None and not self.tracking_tag:
                body += f"\nUnsubscribe: {self.unsubscribe_link}"
            lines.append(body)
        return "\n".join(lines)


@dataclass
class Fault:
    kind: str  # "status", "drop", "drop_after_accept"
    status: int = 0
    reset: int | None = None
    paths: str = "/v3/"  # applies to requests whose path starts with this
    message: str | None = None  # the error body's message (else one for the status)
    field: str | None = None  # and its field


@dataclass
class Logged:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int  # 0: dropped


@dataclass
class SendGridServer:
    api_key: str = API_KEY
    record: bool = True
    max_body: int = MAX_BODY
    schema_path: Path | None = SCHEMA_PATH
    forbidden_keys: tuple[str, ...] = ()
    delay: float = 0.0  # seconds per mail send (kill tests)
    latency: float = 0.0  # seconds per request and per new connection (a round trip)
    gather: int = 0  # mail sends wait until this many are in flight at once
    check_every: int = 1  # validate one mail send in this many
    connections: int = 0  # TCP connections accepted
    gathered: bool = False  # ``gather`` mail sends were in flight at once
    deliveries: list[Delivery] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    accepted_requests: int = 0
    in_flight: int = 0  # mail sends being handled now
    max_in_flight: int = 0  # the most ever handled at once
    accepted_recipients: int = 0
    sandboxed_requests: int = 0
    suppressions: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {name: [] for name in SUPPRESSION_LISTS}
    )
    groups: dict[int, list[str]] = field(default_factory=dict)
    unsubscribe_links: dict[str, str] = field(default_factory=dict)  # token -> address
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flying: threading.Condition = field(default_factory=threading.Condition)
    _open: set[Any] = field(default_factory=set)  # the sockets of open connections
    _mail_sends: int = 0
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _schema: dict[str, Any] | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> SendGridServer:
        self._schema = load_schema(self.schema_path)
        handler = type("Handler", (_Handler,), {"peer": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = False  # server_close() joins every handler thread
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sendgrid-loopback"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            with self._lock:  # kept-alive connections: their handlers end at once
                for sock in self._open:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> SendGridServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults and queries --------------------------------------------------------------------

    def fail(
        self,
        kind: str | int,
        count: int = 1,
        *,
        reset: int | None = None,
        paths: str = "/v3/",
        message: str | None = None,
        field: str | None = None,
    ) -> None:
        """Make the next ``count`` matching requests fail: a status code (answered with
        ``message`` and ``field`` in SendGrid's error body, e.g. from :data:`DOCUMENTED`),
        "drop" or "drop_after_accept"."""
        fault = (
            Fault("status", status=kind, reset=reset, paths=paths, message=message, field=field)
            if isinstance(kind, int)
            else Fault(kind, paths=paths)
        )
        with self._lock:
            self._faults.extend([fault] * count)

    def clear_faults(self) -> None:
        """Forget the faults not used yet: the next requests are answered normally."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if path.startswith(fault.paths):
                    return self._faults.pop(index)
        return None

    def per_address(self) -> Counter[str]:
        """How many messages each address received."""
        with self._lock:
            return Counter(addr.lower() for d in self.deliveries for addr in d.recipients)

    def to(self, email: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if email.lower() in (a.lower() for a in d.to)]

    def mail_requests(self) -> list[Logged]:
        with self._lock:
            return [entry for entry in self.log if entry.path == "/v3/mail/send"]

    def add_suppressions(self, name: str, emails: list[str], created: int = 1_700_000_000) -> None:
        items: list[dict[str, Any]] = []
        for email in emails:
            item: dict[str, Any] = {"created": created, "email": email}
            if name == "bounces":
                item.update(reason="550 5.1.1 user unknown", status="5.1.1")
            elif name == "spam_reports":
                item["ip"] = "10.0.0.1"
            elif name == "invalid_emails":
                item["reason"] = "Mail domain mentioned in email address is unknown"
            items.append(item)
        with self._lock:
            self.suppressions[name].extend(items)

    # -- handling (called from handler threads) ------------------------------------------------

    def _gather(self) -> None:
        """One more mail send in flight; with ``gather``, wait until that many were at once."""
        with self._flying:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.gather and self.max_in_flight >= self.gather:
                self.gathered = True
                self._flying.notify_all()
            elif self.gather:
                self._flying.wait_for(lambda: self.gathered, timeout=GATHER_WAIT)

    def _landed(self) -> None:
        with self._flying:
            self.in_flight -= 1

    def handle_mail(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            checked = self._mail_sends % self.check_every == 0
            self._mail_sends += 1
        problems = validate_mail(body, self._schema) if checked else []
        if problems:
            errors = [{"message": m, "field": f, "help": HELP} for m, f in problems]
            return 400, {}, json.dumps({"errors": errors}).encode()
        if body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable") is True:
            with self._lock:
                self.sandboxed_requests += 1
            return 200, {}, b""
        message_id = secrets.token_urlsafe(16)
        people = body["personalizations"]
        tracking = body.get("tracking_settings", {}).get("subscription_tracking", {})
        with self._lock:
            index = self.accepted_requests
            self.accepted_requests += 1
            self.accepted_recipients += sum(len(_recipients(p)) for p in people)
            if self.record:
                for person in people:
                    link = None
                    if tracking.get("enable") is True:
                        token = secrets.token_urlsafe(12)
                        self.unsubscribe_links[token] = _recipients(person)[0]
                        link = f"{self.url}{UNSUBSCRIBE_PATH}?upn={token}"
                    delivery = _delivery(body, person, message_id, index)
                    self.deliveries.append(
                        replace(
                            delivery,
                            unsubscribe_link=link,
                            tracking_tag=tracking.get("substitution_tag"),
                        )
                    )
        return 202, {"X-Message-Id": message_id}, b""

    def handle_unsubscribe_click(self, query: dict[str, list[str]]) -> int:
        """A one-click POST to SendGrid's own unsubscribe link: the address joins the global
        unsubscribes (200), or 404 for a link it never made."""
        token = query.get("upn", [""])[0]
        with self._lock:
            email = self.unsubscribe_links.get(token)
            if email is None:
                return 404
            listed = {item["email"].lower() for item in self.suppressions["unsubscribes"]}
            if email.lower() not in listed:
                created = int(time.time())
                self.suppressions["unsubscribes"].append({"created": created, "email": email})
        return 200

    def handle_suppressions(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["v3", "asm", "groups"] and len(parts) == 5 and parts[4] == "suppressions":
            try:
                group = self.groups.get(int(parts[3]))
            except ValueError:
                group = None
            if group is None:
                return 404, error_body("Unsubscribe Group ID does not exist", "group_id", None)
            return 200, json.dumps(group).encode()
        if parts[:2] == ["v3", "suppression"] and len(parts) == 3 and parts[2] in self.suppressions:
            try:
                limit = int(query.get("limit", ["500"])[0])
                offset = int(query.get("offset", ["0"])[0])
            except ValueError:
                return 400, error_body("limit and offset must be integers", "limit", None)
            if not 1 <= limit <= 500 or offset < 0:
                return 400, error_body("limit must be between 1 and 500", "limit", None)
            with self._lock:
                page = self.suppressions[parts[2]][offset : offset + limit]
            return 200, json.dumps(page).encode()
        return 404, error_body("not found", None, None)


def _recipients(person: dict[str, Any]) -> list[str]:
    return [r["email"] for kind in ("to", "cc", "bcc") for r in person.get(kind, [])]


def _delivery(body: dict[str, Any], person: dict[str, Any], mid: str, index: int) -> Delivery:
    return Delivery(
        message_id=mid,
        request=index,
        recipients=tuple(_recipients(person)),
        to=tuple(r["email"] for r in person.get("to", [])),
        subject=person.get("subject") or body.get("subject", ""),
        headers={**body.get("headers", {}), **person.get("headers", {})},
        substitutions=dict(person.get("substitutions", {})),
        content=tuple((c["type"], c["value"]) for c in body.get("content", [])),
        categories=tuple(body.get("categories", [])),
        custom_args={**body.get("custom_args", {}), **person.get("custom_args", {})},
        asm=body.get("asm"),
    )


class _Handler(BaseHTTPRequestHandler):
    peer: SendGridServer
    server_version = "loopback-sendgrid/1"
    protocol_version = "HTTP/1.1"  # connections are kept alive
    timeout = IDLE

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.peer._lock:
            self.peer.connections += 1
            self.peer._open.add(self.connection)
        if self.peer.latency:
            time.sleep(self.peer.latency)  # the handshake's round trip

    def finish(self) -> None:
        with self.peer._lock:
            self.peer._open.discard(self.connection)
        with contextlib.suppress(OSError):  # a client that hung up first
            super().finish()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):  # the client hung up or went silent
            self.close_connection = True

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed and self.peer.latency and not self.path.startswith("/v3/mail/send"):
            time.sleep(self.peer.latency)  # the request's round trip (a mail send's: in flight)
        return parsed

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self._log(status)  # before answering: a client that got its answer sees it logged
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _log(self, status: int) -> None:
        url = urlsplit(self.path)
        with self.peer._lock:
            self.peer.log.append(Logged(self.command, url.path, parse_qs(url.query), status))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        chunks, left = [], length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _authorized(self) -> int:
        given = self.headers.get("Authorization", "")
        key = given.removeprefix("Bearer ")
        if not given.startswith("Bearer ") or key not in (
            self.peer.api_key,
            *self.peer.forbidden_keys,
        ):
            return 401
        return 403 if key in self.peer.forbidden_keys else 0

    def _fault(self, path: str) -> Fault | None:
        fault = self.peer._take_fault(path)
        if fault is None:
            return None
        if fault.kind == "status":
            headers = {}
            if fault.reset is not None:
                headers = {"X-RateLimit-Reset": str(fault.reset), "X-RateLimit-Limit": "600"}
                headers["X-RateLimit-Remaining"] = "0"
            message = fault.message or {
                429: "too many requests",
                400: "Bad Request",
                403: "access forbidden",
            }.get(fault.status, "internal server error")
            self._send(fault.status, error_body(message, fault.field, None), headers)
        elif fault.kind == "drop":
            self.close_connection = True
            self._log(0)
        return fault

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        too_big = length > self.peer.max_body
        raw = b"" if too_big else self._read_body()
        if path == UNSUBSCRIBE_PATH and not too_big:  # a reader's click: no API key
            status = self.peer.handle_unsubscribe_click(parse_qs(urlsplit(self.path).query))
            self._send(status)
            return
        if too_big:  # drain it, so the client gets to read the answer
            left = length
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        auth = self._authorized()
        if auth:
            message = "The provided authorization grant is invalid, expired, or revoked"
            if auth == 403:
                message = "access forbidden"
            self._send(auth, error_body(message, None, None))
            return
        fault = self._fault(path)
        if fault is not None and fault.kind != "drop_after_accept":
            return
        if path != "/v3/mail/send":
            self._send(404, error_body("not found", None, None))
            return
        if too_big:
            self._send(413, error_body("Payload Too Large", None, None))
            return
        self.peer._gather()
        try:
            if self.peer.latency:
                time.sleep(self.peer.latency)  # the request's round trip, counted in flight
            if self.peer.delay:
                time.sleep(self.peer.delay)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            status, headers, answer = (
                self.peer.handle_mail(body)
                if isinstance(body, dict)
                else (400, {}, error_body("Bad Request", None, None))
            )
        finally:
            self.peer._landed()
        if fault is not None:  # drop_after_accept
            self.close_connection = True
            self._log(0)
            return
        self._send(status, answer, headers)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == UNSUBSCRIBE_PATH:  # SendGrid's page (a GET changes nothing here)
            self._send(200 if "upn" in parse_qs(url.query) else 404)
            return
        auth = self._authorized()
        if auth:
            self._send(auth, error_body("authorization required", None, None))
            return
        if self._fault(url.path) is not None:
            return
        status, body = self.peer.handle_suppressions(url.path, parse_qs(url.query))
        self._send(status, body)


# --- validation -------------------------------------------------------------------------------


def load_schema(path: Path | None) -> dict[str, Any] | None:
    """The request-body schema from the reference file, with the README's documented quirk."""
    if path is None or not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))["mail_send"]["request_body_schema"]
    schema["properties"]["custom_args"] = {"type": "object"}  # the live API takes an object
    return dict(schema)


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def schema_problems(
    value: Any, schema: dict[str, Any], where: str = ""
) -> Iterator[tuple[str, str]]:
    """(message, field) for each way ``value`` breaks ``schema`` (the subset the v3 spec uses)."""
    kind = schema.get("type")
    if kind in _TYPES:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)
        )
        if value is None and schema.get("nullable"):
            return
        if not ok:
            yield f"The {where or 'request body'} field must be of type {kind}.", where
            return
    if "enum" in schema and value not in schema["enum"]:
        yield f"The {where} field must be one of {schema['enum']}.", where
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            yield f"The {where} field is required and must have at least one character.", where
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"The {where} field must be at most {schema['maxLength']} characters.", where
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                yield _missing(where, name)
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from schema_problems(value[name], sub, f"{where}.{name}" if where else name)
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield f"The {where} field must have at most {schema['maxItems']} items.", where
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) < len(
            value
        ):
            yield f"The {where} field must not contain duplicates.", where
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                yield from schema_problems(item, items, f"{where}.{index}")


def _missing(where: str, name: str) -> tuple[str, str]:
    path = f"{where}.{name}" if where else name
    if path == "from":
        return (
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "from",
        )
    if path == "personalizations":
        return (
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    return f"The {path} field is required.", path


def validate_mail(body: dict[str, Any], schema: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Every documented reason SendGrid gives a 400 for this body, as (message, field)."""
    problems = list(schema_problems(body, schema)) if schema is not None else []
    if schema is None:
        for name in ("personalizations", "from"):
            if name not in body:
                problems.append(_missing("", name))
    people = body.get("personalizations")
    if not isinstance(people, list) or not people:
        if not any(f == "personalizations" for _m, f in problems):
            problems.append(_missing("", "personalizations"))
        return problems
    problems += _limits(body, people)
    problems += _tracking(body.get("tracking_settings"))
    return problems


_TRACKING_KEYS = {
    "click_tracking": {"enable", "enable_text"},
    "open_tracking": {"enable", "substitution_tag"},
    "subscription_tracking": {"enable", "text", "html", "substitution_tag"},
    "ganalytics": {
        "enable",
        "utm_source",
        "utm_medium",
        "utm_term",
        "utm_content",
        "utm_campaign",
    },
}


def _tracking(settings: Any) -> list[tuple[str, str]]:
    """Unknown keys in ``tracking_settings`` (stricter than SendGrid: see the module docstring)."""
    if not isinstance(settings, dict):
        return []
    problems = []
    for name, value in settings.items():
        where = f"tracking_settings.{name}"
        if name not in _TRACKING_KEYS:
            problems.append((f"The {where} field is not a tracking setting.", where))
            continue
        if isinstance(value, dict):
            for key in sorted(set(value) - _TRACKING_KEYS[name]):
                problems.append((f"The {where}.{key} field is not known.", f"{where}.{key}"))
    return problems


def _limits(body: dict[str, Any], people: list[Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    total = 0
    for index, person in enumerate(people):
        if not isinstance(person, dict):
            continue
        for kind in ("to", "cc", "bcc"):
            for recipient in person.get(kind) or []:
                email = (
                    str(recipient.get("email", "")).lower() if isinstance(recipient, dict) else ""
                )
                total += 1
                if email in seen:
                    problems.append(
                        (
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{email}] in the personalizations.{index}.{kind} field.",
                            f"personalizations.{index}.{kind}",
                        )
                    )
                seen.setdefault(email, index)
        subs = person.get("substitutions") or {}
        if isinstance(subs, dict):
            if any(not isinstance(v, str) for v in subs.values()):
                problems.append(
                    (
                        "Substitutions must be strings.",
                        f"personalizations.{index}.substitutions",
                    )
                )
            size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in subs.items())
            if size > MAX_SUBSTITUTIONS:
                problems.append(
                    (
                        "The total size of your substitutions must be less than 10000 bytes "
                        "per personalization object.",
                        f"personalizations.{index}.substitutions",
                    )
                )
    if total > MAX_RECIPIENTS:
        problems.append(
            (
                "The personalizations field may contain at most 1000 recipients in total "
                "(to, cc and bcc across all personalizations).",
                "personalizations",
            )
        )
    if not body.get("subject") and not all(
        isinstance(p, dict) and p.get("subject") for p in people
    ):
        problems.append(
            (
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject defined.",
                "subject",
            )
        )
    content = body.get("content")
    if not body.get("template_id"):
        if not content:
            problems.append(
                (
                    "Unless a valid template_id is provided, the content parameter is required. "
                    "There must be at least one defined content block.",
                    "content",
                )
            )
        elif isinstance(content, list):
            types = [c.get("type") for c in content if isinstance(c, dict)]
            if "text/plain" in types and types[0] != "text/plain":
                problems.append(
                    (
                        "If present, text/plain content must be first, followed by text/html, "
                        "followed by any other content.",
                        "content",
                    )
                )
    args = body.get("custom_args")
    if args is not None and len(json.dumps(args).encode()) >= MAX_CUSTOM_ARGS:
        problems.append(("custom_args must be under 10,000 bytes.", "custom_args"))
    return problems


# --- fixture and process entry point ----------------------------------------------------------


@pytest.fixture
def sendgrid_server() -> Iterator[SendGridServer]:
    """A running loopback SendGrid (``.url``, ``.api_key``), stopped after the test."""
    with SendGridServer() as server:
        yield server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-record", action="store_true", help="keep counts only")
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per round trip")
    parser.add_argument("--check-every", type=int, default=1, help="validate 1 mail send in N")
    args = parser.parse_args(argv)
    server = SendGridServer(
        api_key=args.api_key,
        record=not args.no_record,
        latency=args.latency,
        check_every=args.check_every,
    ).start()
    print(f"PORT {server.port}", flush=True)
    try:
        for line in sys.stdin:  # "stats" prints counts; end of input stops the server
            if line.strip() == "stats":
                stats = {
                    "requests": server.accepted_requests,
                    "recipients": server.accepted_recipients,
                    "sandboxed": server.sandboxed_requests,
                    "log": len(server.log),
                    "connections": server.connections,
                    "max_in_flight": server.max_in_flight,
                }
                print(json.dumps(stats), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
