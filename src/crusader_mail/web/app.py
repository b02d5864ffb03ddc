"""The web endpoints of ``crusader-mail serve`` (Starlette).

Contract: ``build_app(settings, clock, mailer) -> Starlette`` with

- ``POST /inbound/{secret}`` (or ``POST /inbound`` with HTTP basic auth, the secret as password):
  SendGrid Inbound Parse, default mode (``headers``, ``text``, ``envelope``, ``SPF``, ``dkim``...)
  and raw mode (``email``: the whole MIME message); handled like any mail by :mod:`inbox`.
- ``GET /unsubscribe?token=`` and ``GET /confirm?token=``: a page with a button; they change
  NOTHING (mail scanners follow links).
- ``POST /unsubscribe`` (also RFC 8058 one-click: body ``List-Unsubscribe=One-Click``, token in
  the query) and ``POST /confirm``: do it, answer with a page, send the goodbye / welcome.
- ``POST /events``: SendGrid Event Webhook, ECDSA-signed (``X-Twilio-Email-Event-Webhook-
  Signature`` over timestamp + body, key ``server.event_public_key``): bounce, dropped,
  spamreport, unsubscribe, group_unsubscribe are recorded; idempotent on ``sg_event_id``.
  A timestamp more than ``MAX_EVENT_AGE`` seconds from now (a replay) is refused like a bad
  signature.

Secrets are compared with :func:`hmac.compare_digest`. Pages are plain HTML from
``templates_dir/web``, with the newsletter's name, no scripts, and a strict CSP. Every response
carries the security headers, and every request body is capped while it streams (``413``):
``MAX_BODY`` for Inbound Parse, ``MAX_EVENTS_BODY`` for events, ``MAX_FORM_BODY`` elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crusader_mail.clock import Clock
from crusader_mail.delivery.mailer import Mailer
from crusader_mail.errors import (
    ConfigError,
    CrusaderMailError,
    InvalidAddress,
    TokenError,
    TokenExpired,
)
from crusader_mail.inbox import classify
from crusader_mail.inbox.process import (
    CONFIRM_DAYS,
    AddressIndex,
    InboxActions,
    InboxContext,
    ctx_state,
    process_messages,
)
from crusader_mail.inbox.sources import MAX_MESSAGE_BYTES, RawMessage
from crusader_mail.models import Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage.files.subscribers import normalize_email
from crusader_mail.util.masking import mask_email
from crusader_mail.util.tokens import Purpose

MAX_BODY = 4 * MAX_MESSAGE_BYTES  # an Inbound Parse post: the message plus its parsed copies
MAX_EVENTS_BODY = 5 * 1024 * 1024
MAX_FORM_BODY = 64 * 1024  # /unsubscribe, /confirm: a token and a word or two
MAX_EVENT_AGE = 600  # seconds between a signed event batch's timestamp and now (either way)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # tokens are in the URLs
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def build_app(settings: Settings, clock: Clock, mailer: Mailer) -> Starlette:
    web = _Web(InboxContext.create(settings, clock, mailer))
    routes = [
        Route("/", web.home, methods=["GET"]),
        Route("/unsubscribe", web.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe", web.unsubscribe, methods=["POST"]),
        Route("/confirm", web.confirm_page, methods=["GET"]),
        Route("/confirm", web.confirm, methods=["POST"]),
        Route("/inbound", web.inbound, methods=["POST"]),
        Route("/inbound/{secret}", web.inbound, methods=["POST"]),
        Route("/events", web.events, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_Guard)])


def body_limit(path: str) -> int:
    """The largest request body accepted on ``path``."""
    if path == "/inbound" or path.startswith("/inbound/"):
        return MAX_BODY
    if path == "/events":
        return MAX_EVENTS_BODY
    return MAX_FORM_BODY


class _Guard:
    """ASGI middleware: the security headers on every response (JSON and errors too), and
    request bodies capped as they stream: a declared ``Content-Length`` over the cap is refused
    before anything is read, and a chunked body is cut off (``413``) once it grows past it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse({"error": "too large"}, status_code=413)(
                scope, receive, send_guarded
            )
            return
        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # Starlette's exception middleware answers 413
                    raise HTTPException(413, "too large")
            return message

        await self.app(scope, receive_capped, send_guarded)


@dataclass(frozen=True)
class _Outcome:
    status: int
    template: str
    values: Mapping[str, str]


class _Web:
    def __init__(self, ctx: InboxContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.pages = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(ctx.settings.templates_dir / "web")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.event_key = _event_key(ctx.settings.server.event_public_key)
        self._index: tuple[tuple[int, int], AddressIndex] | None = None

    # -- pages ---------------------------------------------------------------------------------

    def page(self, outcome: _Outcome) -> HTMLResponse:
        values = {
            "name": self.settings.newsletter.name,
            "site_url": self.settings.newsletter.site_url,
            **outcome.values,
        }
        html = self.pages.get_template(outcome.template).render(values)
        return HTMLResponse(html, status_code=outcome.status, headers=SECURITY_HEADERS)

    async def home(self, request: Request) -> Response:
        return self.page(_Outcome(200, "home.html", {}))

    def index(self) -> AddressIndex:
        """Readers by token hint, rebuilt when the list file changes."""
        path = self.ctx.readers.path
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = (0, 0)
        if self._index is None or self._index[0] != key:
            emails = (s.email for s in self.ctx.readers.iter()) if key != (0, 0) else iter(())
            self._index = (key, AddressIndex(self.ctx.signer, emails))
        return self._index[1]

    def _find(self, purpose: Purpose, token: str, max_age: int | None) -> str:
        now = self.ctx.clock.now()
        return self.ctx.signer.verify(purpose, token, self.index().candidates(token), now, max_age)

    # -- unsubscribe ---------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        return self.page(await run_in_threadpool(self._unsubscribe_page, token))

    def _unsubscribe_page(self, token: str) -> _Outcome:
        try:
            email = self._find(Purpose.UNSUBSCRIBE, token, None)
        except TokenError:
            return _invalid_link()
        current = self.ctx.readers.get(email)
        if current is None or current.status not in {Status.ACTIVE, Status.PENDING}:
            return _Outcome(200, "done.html", _left(email))
        return _ask("Unsubscribe", f"Stop sending the newsletter to {mask_email(email)}?", token)

    async def unsubscribe(self, request: Request) -> Response:
        token = await _token(request)
        return self.page(await run_in_threadpool(self._unsubscribe, token))

    def _unsubscribe(self, token: str) -> _Outcome:
        with ctx_state(self.ctx) as state, self.ctx.readers.edit() as roster:
            try:
                email = self._find(Purpose.UNSUBSCRIBE, token, None)
            except TokenError:
                return _invalid_link()
            actions = InboxActions(self.ctx, roster, state, index=self.index())
            actions.unsubscribe(email, _web_ref(), Source.WEB)
        return _Outcome(200, "done.html", _left(email))

    # -- confirm -------------------------------------------------------------------------------

    async def confirm_page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        return self.page(await run_in_threadpool(self._confirm_page, token))

    def _confirm_page(self, token: str) -> _Outcome:
        try:
            email = self._find(Purpose.CONFIRM, token, CONFIRM_DAYS)
        except TokenExpired:
            return _expired()
        except TokenError:
            return _invalid_link()
        current = self.ctx.readers.get(email)
        if current is not None and current.status is Status.ACTIVE:
            return _Outcome(200, "done.html", _joined(email))
        if current is None or current.status is not Status.PENDING:
            return _invalid_link()
        question = f"Send the newsletter to {mask_email(email)}?"
        return _ask("Confirm your subscription", question, token, confirm=True)

    async def confirm(self, request: Request) -> Response:
        token = await _token(request)
        return self.page(await run_in_threadpool(self._confirm, token))

    def _confirm(self, token: str) -> _Outcome:
        with ctx_state(self.ctx) as state, self.ctx.readers.edit() as roster:
            try:
                email = self._find(Purpose.CONFIRM, token, CONFIRM_DAYS)
            except TokenExpired:
                return _expired()
            except TokenError:
                return _invalid_link()
            current = roster.get(email)
            if current is None or current.status not in {Status.ACTIVE, Status.PENDING}:
                return _invalid_link()
            actions = InboxActions(self.ctx, roster, state, index=self.index())
            actions.confirm(email, _web_ref(), Source.WEB)
        return _Outcome(200, "done.html", _joined(email))

    # -- SendGrid Inbound Parse ----------------------------------------------------------------

    def _inbound_allowed(self, request: Request) -> bool:
        secret = self.settings.server.inbound_secret
        expected = secret.get_secret_value().encode() if secret else b""
        if not expected:
            return False
        given = request.path_params.get("secret")
        if given is None:
            given = _basic_password(request.headers.get("authorization", ""))
        return hmac.compare_digest(str(given or "").encode(), expected)

    async def inbound(self, request: Request) -> Response:
        if not self.settings.server.inbound_secret:
            return JSONResponse({"error": "inbound is not configured"}, status_code=404)
        if not self._inbound_allowed(request):
            headers = {} if "secret" in request.path_params else {"WWW-Authenticate": "Basic"}
            return JSONResponse({"error": "not allowed"}, status_code=401, headers=headers)
        async with request.form(
            max_files=100, max_fields=200, max_part_size=MAX_MESSAGE_BYTES + 1
        ) as form:
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        raw = inbound_message(fields)
        try:
            report = await run_in_threadpool(process_messages, [raw], self.ctx)
        except CrusaderMailError as error:  # busy or damaged state: SendGrid retries later
            return JSONResponse({"error": str(error)}, status_code=503)
        return JSONResponse(report.as_json())

    # -- SendGrid Event Webhook ----------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        if self.event_key is None:
            return JSONResponse({"error": "events are not configured"}, status_code=404)
        body = await request.body()
        signature = request.headers.get("x-twilio-email-event-webhook-signature", "")
        timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp", "")
        if not fresh_timestamp(timestamp, self.ctx.clock.now().timestamp()):
            return JSONResponse({"error": "stale or missing timestamp"}, status_code=403)
        if not verify_event_signature(self.event_key, signature, timestamp, body):
            return JSONResponse({"error": "bad signature"}, status_code=403)
        try:
            events = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(events, list):
            return JSONResponse({"error": "expected a JSON array of events"}, status_code=400)
        try:
            counts = await run_in_threadpool(self._record_events, events)
        except CrusaderMailError as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        return JSONResponse(counts)

    def _record_events(self, events: list[Any]) -> dict[str, int]:
        counts = {"recorded": 0, "duplicates": 0, "ignored": 0}
        now = self.ctx.clock.now()
        with ctx_state(self.ctx) as state, self.ctx.readers.edit() as roster:
            for event in events:
                if not isinstance(event, dict) or not isinstance(event.get("sg_event_id"), str):
                    counts["ignored"] += 1
                    continue
                event_id = event["sg_event_id"]
                if state.event_seen(event_id):
                    counts["duplicates"] += 1
                    continue
                change = _event_change(event)
                email = _event_email(event)
                done = False
                if change is not None and email is not None:
                    ref = f"sendgrid:{event_id}"[:200]
                    current = roster.get(email)
                    if current is not None and current.status in {Status.ACTIVE, Status.PENDING}:
                        if change is Status.UNSUBSCRIBED:
                            roster.unsubscribe(email, via=Source.SENDGRID, ref=ref)
                        else:
                            roster.mark(email, change, via=Source.SENDGRID, ref=ref)
                    done = True
                state.remember_event(event_id, now)
                counts["recorded" if done else "ignored"] += 1
        return counts


# --- helpers ------------------------------------------------------------------------------------


def _ask(heading: str, text: str, token: str, *, confirm: bool = False) -> _Outcome:
    """The page behind a link: one button that POSTs the token back (GET changes nothing)."""
    action, button = ("/confirm", "Yes, subscribe me") if confirm else ("/unsubscribe", heading)
    values = {"heading": heading, "text": text, "action": action, "token": token, "button": button}
    return _Outcome(200, "ask.html", values)


def _invalid_link() -> _Outcome:
    return _Outcome(
        400,
        "done.html",
        {
            "heading": "This link does not work",
            "text": "The link is not valid, or no longer valid. Nothing was changed.",
            "more": "",
        },
    )


def _expired() -> _Outcome:
    return _Outcome(
        400,
        "done.html",
        {
            "heading": "This link has expired",
            "text": "Confirmation links are valid for 7 days. Nothing was changed.",
            "more": "To subscribe, simply ask again.",
        },
    )


def _left(email: str) -> dict[str, str]:
    return {
        "heading": "You are unsubscribed",
        "text": f"{mask_email(email)} will receive no more mail from us. Thank you for reading.",
        "more": "If you ever want to come back, you are always welcome.",
    }


def _joined(email: str) -> dict[str, str]:
    return {
        "heading": "You are subscribed",
        "text": f"Welcome! The newsletter will now reach {mask_email(email)}.",
        "more": "Every issue has a link to leave whenever you like.",
    }


def _web_ref() -> str:
    return f"web:{secrets.token_hex(6)}"


async def _token(request: Request) -> str:
    """The token from the query (RFC 8058 one-click) or the form body."""
    token = request.query_params.get("token", "")
    if token:
        return token
    # the field cap is the body cap: an oversized body is always refused by ``_Guard`` (413),
    # however the reads fall, never first by the form parser's own field limit (400)
    async with request.form(max_files=0, max_fields=10, max_part_size=MAX_FORM_BODY) as form:
        value = form.get("token")
    return value if isinstance(value, str) else ""


def _basic_password(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def _event_key(value: str | None) -> ec.EllipticCurvePublicKey | None:
    if not value:
        return None
    try:
        key = load_der_public_key(base64.b64decode(value.strip(), validate=True))
    except (ValueError, binascii.Error, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(
            "server.event_public_key: not a base64 DER ECDSA public key "
            "(copy it from SendGrid's Signed Event Webhook settings)"
        )
    return key


def fresh_timestamp(timestamp: str, now: float, max_age: int = MAX_EVENT_AGE) -> bool:
    """Is the webhook's Unix timestamp within ``max_age`` seconds of ``now``? Bounds replays of
    a captured, validly signed batch (the signature covers the timestamp)."""
    value = timestamp.strip()
    if not value.isdigit() or len(value) > 12:
        return False
    return abs(now - int(value)) <= max_age


def verify_event_signature(
    key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes
) -> bool:
    """SendGrid signs ``timestamp + payload`` with ECDSA P-256 / SHA-256 (base64 DER)."""
    if not signature or not timestamp:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


_BOUNCE_REASONS = ("bounced address", "invalid")


def _event_change(event: Mapping[str, Any]) -> Status | None:
    kind = str(event.get("event", "")).lower()
    if kind == "bounce":
        return None if str(event.get("type", "")).lower() == "blocked" else Status.BOUNCED
    if kind == "dropped":
        reason = str(event.get("reason", "")).lower()
        if any(word in reason for word in _BOUNCE_REASONS):
            return Status.BOUNCED
        if "spam report" in reason:
            return Status.COMPLAINED
        if "unsubscribed" in reason:
            return Status.UNSUBSCRIBED
        return None
    if kind == "spamreport":
        return Status.COMPLAINED
    if kind in {"unsubscribe", "group_unsubscribe"}:
        return Status.UNSUBSCRIBED
    return None


def _event_email(event: Mapping[str, Any]) -> str | None:
    value = event.get("email")
    if not isinstance(value, str):
        return None
    try:
        return normalize_email(value)
    except InvalidAddress:
        return None


# --- Inbound Parse to a message -----------------------------------------------------------------

_DROP_HEADERS = re.compile(r"^(content-type|content-transfer-encoding|mime-version)\s*:", re.I)


def inbound_message(fields: Mapping[str, str]) -> RawMessage:
    """One Inbound Parse post as a message: the raw MIME (raw mode), else its headers with the
    text part as a plain body (default mode). SendGrid's SPF/DKIM verdict counts as
    authentication only when aligned with the From domain."""
    envelope: dict[str, Any] = {}
    try:
        loaded = json.loads(fields.get("envelope", "") or "{}")
        envelope = loaded if isinstance(loaded, dict) else {}
    except ValueError:
        envelope = {}
    rcpt = envelope.get("to", [])
    envelope_to = (
        tuple(str(a) for a in rcpt if isinstance(a, str))[:20] if isinstance(rcpt, list) else ()
    )
    if fields.get("email"):
        data = fields["email"].encode("utf-8", errors="surrogateescape")
    else:
        data = _rebuild(fields.get("headers", ""), fields.get("text", "") or fields.get("html", ""))
    message = classify.parse(data)
    senders = classify.addresses(message, "From")
    from_domain = senders[0].rpartition("@")[2].lower() if senders else ""
    mail_from = str(envelope.get("from", "")).rpartition("@")[2].lower()
    spf_pass = fields.get("SPF", "").strip().lower() == "pass" and mail_from == from_domain
    dkim_pass = bool(from_domain) and any(
        domain.lower() == from_domain
        for domain in re.findall(r"@([\w.-]+)\s*:\s*pass", fields.get("dkim", ""), re.I)
    )
    return RawMessage(
        data,
        origin="sendgrid-inbound",
        envelope_to=envelope_to,
        authenticated=bool(from_domain) and (spf_pass or dkim_pass),
    )


def _rebuild(headers: str, text: str) -> bytes:
    kept: list[str] = []
    dropping = False
    for line in headers.replace("\r\n", "\n").split("\n"):
        if line[:1] in {" ", "\t"}:
            if not dropping:
                kept.append(line)
            continue
        dropping = bool(_DROP_HEADERS.match(line))
        if not dropping and line.strip():
            kept.append(line)
    kept += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    kept.append("Content-Transfer-Encoding: 8bit")
    return ("\r\n".join(kept) + "\r\n\r\n" + text).encode("utf-8", errors="replace")
