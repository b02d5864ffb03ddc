"""Subscribing and unsubscribing by email: each message sorted out and handed to the service.

Contract::

    process_messages(messages: Iterable[RawMessage], ctx: InboxContext) -> InboxReport

Loops, auto-replies, bounces and complaints are sorted out first
(:mod:`crusader_mail.inbox.classify`) and are never commands. A bounce or complaint marks only
the readers it proves it answers: whose signed mail id (``X-Crusader-Mail-Id``, in every issue
and reply we send) it returns; the addresses it merely names are reported as unverified and
keep their status (anyone can write a DSN or an ARF report naming anyone). Anything else may
carry a command (:mod:`crusader_mail.inbox.commands`):

- an unsubscribe token unsubscribes the reader it was made for, whatever the From;
- a confirmation token (by the confirm address or the body, never the subject) confirms the
  reader it was made for only when the message comes from that very mailbox;
- subscribe asks for the From address (a confirmation goes to it);
- unsubscribe without a token is immediate when the sender is authenticated (a ``pass``,
  aligned with From, in the topmost ``Authentication-Results``, written by
  ``server.trusted_authserv_id`` on mail our host delivered; or SendGrid's own verdict on an
  Inbound Parse post, whose headers are never read for it); otherwise the reader is asked to
  confirm.

What each command does is :mod:`crusader_mail.subscriptions.service`. All messages of one call
are one unit of change of the store (memory, then roster); the replies are queued with it and
sent by the caller once it is stored (:mod:`crusader_mail.subscriptions.outbox`). Each message
is handled once: the store's memory keeps keyed hashes of the Message-IDs (never the ids or
addresses).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from crusader_mail.clock import Clock
from crusader_mail.errors import CrusaderMailError
from crusader_mail.inbox import classify
from crusader_mail.inbox.classify import Kind
from crusader_mail.inbox.commands import Command, authenticated, parse_command
from crusader_mail.inbox.sources import MAX_MESSAGE_BYTES, RawMessage
from crusader_mail.models import Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage.contract import Store
from crusader_mail.storage.rules import normal_or_none
from crusader_mail.subscriptions.outbox import OutboxReport
from crusader_mail.subscriptions.service import Session, SubscriptionService
from crusader_mail.util.masking import mask_addresses
from crusader_mail.util.tokens import Signer


@dataclass(frozen=True)
class Action:
    message_id: str
    command: str  # a Command, a classify.Kind, "none", "duplicate" or "skipped"
    result: str  # addresses in it are masked
    origin: str = ""

    def as_json(self) -> dict[str, str]:
        return {"message_id": self.message_id, "command": self.command, "result": self.result}


@dataclass
class InboxReport:
    processed: int = 0
    actions: list[Action] = field(default_factory=list)
    replies: OutboxReport | None = None  # the replies sent afterwards, when the caller did
    expired: int = 0  # requests to join never confirmed, erased before (when the caller did)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "processed": self.processed,
            "actions": [a.as_json() for a in self.actions],
        }
        if self.expired:
            data["expired"] = self.expired
        if self.replies is not None:
            data["replies"] = self.replies.as_json()
        return data


@dataclass
class InboxContext:
    settings: Settings
    clock: Clock
    store: Store
    signer: Signer
    max_bytes: int = MAX_MESSAGE_BYTES

    @classmethod
    def create(cls, settings: Settings, clock: Clock, store: Store) -> InboxContext:
        signer = Signer(settings.require_secret_key())
        return cls(settings, clock, store, signer)

    def service(self) -> SubscriptionService:
        return SubscriptionService(self.settings, self.clock, self.store, self.signer)


def process_messages(messages: Iterable[RawMessage], ctx: InboxContext) -> InboxReport:
    """Handle each message once; store the changes with their replies queued (the caller
    sends them); return what was done."""
    report = InboxReport()
    with ctx.service().session() as session:
        handler = _Handler(session, ctx.max_bytes)
        for raw in messages:
            report.processed += 1
            report.actions.append(handler.handle(raw))
    return report


class _Handler:
    """One message at a time: sorted out, deduplicated, its command handed to the session."""

    def __init__(self, session: Session, max_bytes: int) -> None:
        self.session = session
        self.settings = session.settings
        self.max_bytes = max_bytes

    def handle(self, raw: RawMessage) -> Action:
        if raw.size > self.max_bytes or len(raw.data) > self.max_bytes:
            mib = self.max_bytes // (1024 * 1024)
            return Action("", "skipped", f"over {mib} MB ({raw.size} bytes): not read", raw.origin)
        message = classify.parse(raw.data)
        message_id, key = _identity(message, raw.data)
        memory = self.session.memory
        if memory.seen(key):
            return Action(message_id, "duplicate", "handled before: nothing to do", raw.origin)
        try:
            command, result = self._dispatch(message, message_id, raw)
        except CrusaderMailError as error:
            command, result = "error", str(error)
        except Exception as error:
            command, result = "error", f"could not handle this message ({type(error).__name__})"
        memory.remember(key, self.session.clock.now())
        # results quote headers and error messages: no address may pass unmasked
        return Action(message_id, command, mask_addresses(result), raw.origin)

    def _dispatch(self, message: Message, ref: str, raw: RawMessage) -> tuple[str, str]:
        session = self.session
        sort = classify.classify(message, self.settings)
        if sort.kind in {Kind.LOOP, Kind.AUTO_REPLY}:
            return sort.kind.value, f"ignored: {sort.reason}"
        if sort.kind in {Kind.BOUNCE, Kind.COMPLAINT}:
            status = Status.BOUNCED if sort.kind is Kind.BOUNCE else Status.COMPLAINED
            proofs = classify.mail_ids(message)
            result = session.signal(status, proofs, sort.hard, sort.soft, ref, Source.EMAIL)
            return sort.kind.value, result
        parsed = parse_command(message, self.settings, raw.envelope_to)
        if parsed is None:
            return "none", "not a command: no reply"
        sender = _sender(message)
        if parsed.token and parsed.command is Command.UNSUBSCRIBE:
            return parsed.command.value, session.unsubscribe_token(parsed.token, ref, Source.EMAIL)
        if sender is None:
            return parsed.command.value, "ignored: no valid From address"
        if parsed.token:
            result = session.confirm_token(parsed.token, ref, Source.EMAIL, sender=sender)
            return parsed.command.value, result
        if parsed.command is Command.SUBSCRIBE:
            name = classify.display_name(message)
            return parsed.command.value, session.subscribe(sender, name, ref, Source.EMAIL)
        if parsed.command is Command.UNSUBSCRIBE:
            proven = raw.authenticated or (
                raw.own_headers and authenticated(message, self.settings, sender)
            )
            result = session.unsubscribe_request(sender, proven, ref, Source.EMAIL)
            return parsed.command.value, result
        return parsed.command.value, session.help(sender)


def _identity(message: Message, data: bytes) -> tuple[str, str]:
    """The id shown in the report, and the key the memory keeps (hashed) for the message."""
    message_id = classify.header(message, "Message-ID")[:200]
    if message_id:
        return message_id, "mid:" + message_id
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256:{digest[:16]}", "sha256:" + digest


def _sender(message: Message) -> str | None:
    found = classify.addresses(message, "From")
    if len(found) != 1:
        return None
    return normal_or_none(found[0])
