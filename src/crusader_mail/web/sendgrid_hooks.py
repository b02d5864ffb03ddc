"""SendGrid's web hooks: Inbound Parse and the signed Event Webhook.

- ``POST /inbound/{secret}`` (or ``POST /inbound`` with HTTP basic auth, the secret as password):
  SendGrid Inbound Parse, default mode (``headers``, ``text``, ``envelope``, ``SPF``, ``dkim``...)
  and raw mode (``email``: the whole MIME message); handled like any mail by
  :mod:`crusader_mail.inbox.process`, its replies sent after the answer (a background task). A
  busy or damaged store answers ``503`` (SendGrid retries). The answer shows Message-IDs
  masked (:func:`~crusader_mail.util.masking.mask_message_id`).
- ``POST /events``: SendGrid Event Webhook, ECDSA-signed (``X-Twilio-Email-Event-Webhook-
  Signature`` over timestamp + body, key ``server.event_public_key``): bounce, dropped,
  spamreport, unsubscribe, group_unsubscribe are recorded through the subscription service;
  idempotent on ``sg_event_id``. A timestamp more than ``MAX_EVENT_AGE`` seconds from now (a
  replay) is refused like a bad signature. A body whose arrays and objects nest deeper than
  ``MAX_JSON_DEPTH`` is refused (``400``) before it is parsed (so is an Inbound Parse
  ``envelope``: it is then ignored).

Secrets are compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crusader_mail.errors import ConfigError, CrusaderMailError
from crusader_mail.inbox import classify
from crusader_mail.inbox.process import InboxContext, process_messages
from crusader_mail.inbox.sources import MAX_MESSAGE_BYTES, RawMessage
from crusader_mail.models import Status
from crusader_mail.storage.rules import normal_or_none
from crusader_mail.subscriptions.outbox import Drainer
from crusader_mail.subscriptions.service import SubscriptionService
from crusader_mail.util.masking import mask_message_ids

MAX_BODY = 4 * MAX_MESSAGE_BYTES  # an Inbound Parse post: the message plus its parsed copies
MAX_EVENTS_BODY = 5 * 1024 * 1024
MAX_EVENT_AGE = 600  # seconds between a signed event batch's timestamp and now (either way)
MAX_JSON_DEPTH = 16  # arrays and objects inside each other: an event batch needs 3 or 4


class SendGridHooks:
    """The two endpoints; mail goes to the inbox processor, events to the service."""

    def __init__(self, ctx: InboxContext, service: SubscriptionService, drain: Drainer) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.service = service
        self.drain = drain
        self.event_key = _event_key(ctx.settings.server.event_public_key)

    # -- Inbound Parse -------------------------------------------------------------------------

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
        answer = mask_message_ids(report.as_json())
        return JSONResponse(answer, background=BackgroundTask(self.drain))

    # -- Event Webhook -------------------------------------------------------------------------

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
        if not nesting_within(body):
            return JSONResponse(
                {"error": f"JSON nested deeper than {MAX_JSON_DEPTH} levels"}, status_code=400
            )
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
        with self.service.session() as session:
            for event in events:
                if not isinstance(event, dict) or not isinstance(event.get("sg_event_id"), str):
                    counts["ignored"] += 1
                    continue
                email = _event_email(event)
                outcome = session.record_event(event["sg_event_id"], email, _event_change(event))
                counts[outcome] += 1
        return counts


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


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.S)
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKET = bytes(set(range(256)) - set(b"[]{}"))


def nesting_within(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Do the arrays and objects of this JSON text nest at most ``limit`` deep? Told without
    parsing (:func:`json.loads` recurses once a level, so a deep enough text raises
    ``RecursionError``): the strings are dropped, then the brackets, innermost pairs first,
    ``limit`` times over. A text that is not JSON may be told too deep; it is refused anyway."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        if not brackets:
            break
        brackets = _EMPTY_PAIR.sub(b"", brackets)
    return not brackets


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
    return normal_or_none(value) if isinstance(value, str) else None


# --- Inbound Parse to a message -----------------------------------------------------------------

_DROP_HEADERS = re.compile(r"^(content-type|content-transfer-encoding|mime-version)\s*:", re.I)


def inbound_message(fields: Mapping[str, str]) -> RawMessage:
    """One Inbound Parse post as a message: the raw MIME (raw mode), else its headers with the
    text part as a plain body (default mode). SendGrid's SPF/DKIM verdict (its ``SPF`` and
    ``dkim`` fields) counts as authentication only when aligned with the From domain, and it is
    the only one: no host of ours received this message, so an ``Authentication-Results``
    header in it was written by someone else and is never read (``own_headers=False``)."""
    envelope: dict[str, Any] = {}
    text = fields.get("envelope", "") or "{}"
    try:
        loaded = json.loads(text) if nesting_within(text.encode("utf-8", "replace")) else None
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
        own_headers=False,
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
