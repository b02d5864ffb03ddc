"""Subscribing and unsubscribing by email: command parsing and the actions they take.

Contract::

    process_messages(messages: Iterable[RawMessage], ctx: InboxContext) -> InboxReport

A message is a command by its address (``news+subscribe@``, ``+unsubscribe@``,
``+confirm-<token>@``, ``+unsubscribe-<token>@`` in To/Cc/Delivered-To/X-Original-To) or its
words (Subject or first non-quoted body line: subscribe/join, unsubscribe/leave/stop/remove,
``confirm <token>``, ``unsubscribe <token>``). Loops, auto-replies, bounces and complaints are
sorted out first (:mod:`crusader_mail.inbox.classify`) and are never commands.

- Subscribe is double opt-in: the From address becomes pending and gets a CONFIRM token
  (7 days). The token alone confirms: only the mailbox it was sent to holds it, so the From
  of the confirming message is not trusted and does not matter.
- Unsubscribe is immediate with a token, or when the sender is authenticated (a ``pass`` in the
  first ``Authentication-Results`` from ``server.trusted_authserv_id``, aligned with From);
  otherwise the reader gets a one-step confirmation. A goodbye follows, then nothing more.
- At most one confirmation / already-subscribed / leave / help reply per address per 24 hours.
- Each message is handled once: keyed hashes of Message-IDs and of addresses (never the
  addresses: the state is committed to a public repository) live in ``state_dir/inbox.json``.
- Every change goes through ``SubscriberList.edit()`` with source, time and message id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from enum import StrEnum
from pathlib import Path
from typing import Any

from crusader_mail.clock import Clock
from crusader_mail.delivery.links import list_headers
from crusader_mail.delivery.mailer import Mailer
from crusader_mail.errors import (
    CrusaderMailError,
    InvalidAddress,
    StateError,
    TokenError,
    TokenExpired,
)
from crusader_mail.inbox import classify
from crusader_mail.inbox.classify import Kind
from crusader_mail.inbox.sources import MAX_MESSAGE_BYTES, RawMessage
from crusader_mail.models import Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage.files.subscribers import Roster, SubscriberList, normalize_email
from crusader_mail.subscriptions.notices import Replies, ReplyKind
from crusader_mail.util.masking import mask_addresses, mask_email
from crusader_mail.util.statefile import atomic_write, locked
from crusader_mail.util.tokens import Purpose, Signer

CONFIRM_DAYS = 7
REPLY_WINDOW = timedelta(hours=24)


class Command(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"
    HELP = "help"


@dataclass(frozen=True)
class ParsedCommand:
    command: Command
    token: str = ""
    by: str = "words"  # "address" or "words"


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

    def as_json(self) -> dict[str, Any]:
        return {"processed": self.processed, "actions": [a.as_json() for a in self.actions]}


@dataclass
class InboxContext:
    settings: Settings
    clock: Clock
    mailer: Mailer
    readers: SubscriberList
    signer: Signer
    max_bytes: int = MAX_MESSAGE_BYTES

    @classmethod
    def create(cls, settings: Settings, clock: Clock, mailer: Mailer) -> InboxContext:
        signer = Signer(settings.require_secret_key())
        return cls(settings, clock, mailer, SubscriberList(settings.subscribers_dir, clock), signer)

    @property
    def state_path(self) -> Path:
        return self.settings.state_dir / "inbox.json"


# --- command parsing ----------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\b(confirm|unsubscribe)\s*[:\-]?\s*([a-z2-7]{29})\b", re.IGNORECASE)
_STRONG = {"subscribe": Command.SUBSCRIBE, "unsubscribe": Command.UNSUBSCRIBE}
_WEAK = {
    "join": Command.SUBSCRIBE,
    "leave": Command.UNSUBSCRIBE,
    "stop": Command.UNSUBSCRIBE,
    "remove": Command.UNSUBSCRIBE,
    "help": Command.HELP,
}
_POLITE = {"please", "pls", "hi", "hello", "dear", "kindly"}
_PLUS_TAGS = {
    "subscribe": Command.SUBSCRIBE,
    "join": Command.SUBSCRIBE,
    "unsubscribe": Command.UNSUBSCRIBE,
    "leave": Command.UNSUBSCRIBE,
    "help": Command.HELP,
}
_PRIORITY = [Command.CONFIRM, Command.UNSUBSCRIBE, Command.SUBSCRIBE, Command.HELP]


def parse_command(
    message: Message, settings: Settings, envelope_to: Iterable[str] = ()
) -> ParsedCommand | None:
    """The command a person's message carries, by address first, then by its words."""
    by_address = _by_address(message, settings, envelope_to)
    if by_address is not None:
        return by_address
    subject = classify.header(message, "Subject")
    for line in (subject, first_line(classify.body_text(message))):
        found = parse_words(line)
        if found is not None:
            return found
    return None


def _by_address(
    message: Message, settings: Settings, envelope_to: Iterable[str]
) -> ParsedCommand | None:
    local, _, domain = settings.command_address.lower().rpartition("@")
    found: list[ParsedCommand] = []
    targets = classify.addresses(message, "To", "Cc", "Delivered-To", "X-Original-To")
    for address in [*targets, *envelope_to]:
        their_local, _, their_domain = address.lower().rpartition("@")
        if their_domain != domain or not their_local.startswith(local + "+"):
            continue
        tag = their_local[len(local) + 1 :]
        if tag in _PLUS_TAGS:
            found.append(ParsedCommand(_PLUS_TAGS[tag], by="address"))
        elif tag.startswith("confirm-"):
            found.append(ParsedCommand(Command.CONFIRM, tag[len("confirm-") :], "address"))
        elif tag.startswith("unsubscribe-"):
            token = tag[len("unsubscribe-") :]
            found.append(ParsedCommand(Command.UNSUBSCRIBE, token, "address"))
        else:
            found.append(ParsedCommand(Command.HELP, by="address"))
    if not found:
        return None
    return min(found, key=lambda c: (_PRIORITY.index(c.command), not c.token))


def parse_words(line: str) -> ParsedCommand | None:
    """``subscribe``, ``Please unsubscribe me``, ``Re: ... [confirm <token>]`` and kin."""
    tokenized = _TOKEN_RE.search(line)
    if tokenized:
        command = (
            Command.CONFIRM if tokenized.group(1).lower() == "confirm" else Command.UNSUBSCRIBE
        )
        return ParsedCommand(command, tokenized.group(2).lower())
    text = re.sub(r"^\s*((re|aw|fw|fwd|wg|sv)\s*:\s*|\[[^\]]*\]\s*)+", "", line, flags=re.I)
    words = re.findall(r"[a-z]+", text.lower())
    if not words or len(words) > 12:
        return None
    kinds = {_STRONG[w] for w in words if w in _STRONG}
    first = words[1] if words[0] in _POLITE and len(words) > 1 else words[0]
    if first in _WEAK and len(words) <= 6:
        kinds.add(_WEAK[first])
    if len(kinds) != 1:
        return None
    return ParsedCommand(kinds.pop())


def first_line(text: str) -> str:
    """The first non-empty line that is not quoted (``>``) and not after a signature mark."""
    for raw in text.splitlines():
        line = raw.strip()
        if line in {"--", "-- "}:
            return ""
        if line and not line.startswith(">"):
            return line[:500]
    return ""


# --- sender authentication ----------------------------------------------------------------------


def authenticated(message: Message, settings: Settings, sender: str) -> bool:
    """DKIM, SPF or DMARC pass aligned with the From domain, in the first
    ``Authentication-Results`` written by the trusted host (others can be forged)."""
    trusted = (settings.server.trusted_authserv_id or "").strip().lower()
    if not trusted:
        return False
    from_domain = sender.rpartition("@")[2].lower()
    for value in classify.headers(message, "Authentication-Results"):
        authserv = value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""
        if authserv != trusted:
            continue
        return _aligned_pass(value, from_domain)  # only the topmost one from the trusted host
    return False


def _aligned_pass(value: str, from_domain: str) -> bool:
    for clause in value.split(";")[1:]:
        method = re.match(r"\s*(dkim|spf|dmarc)\s*=\s*(\w+)", clause, re.I)
        if not method or method.group(2).lower() != "pass":
            continue
        props = {
            k.lower(): v.strip("<>\"'").lower()
            for k, v in re.findall(r"([\w.]+)\s*=\s*(\S+)", clause[method.end() :])
        }
        domains = [
            props[key].rpartition("@")[2]
            for key in ("header.d", "header.i", "smtp.mailfrom", "header.from")
            if key in props
        ]
        if any(_same_org(domain, from_domain) for domain in domains):
            return True
    return False


def _same_org(domain: str, from_domain: str) -> bool:
    return bool(domain) and (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )


# --- the inbox memory (state_dir/inbox.json) ----------------------------------------------------

KEEP_SEEN = timedelta(days=400)


class InboxState:
    """Which messages and webhook events were handled, and when each address last got a
    rate-limited reply. Keys are keyed hashes (HMAC with ``secret_key``): the file is public."""

    VERSION = 1

    def __init__(self, path: Path, secret: str, data: dict[str, dict[str, str]]) -> None:
        self.path = path
        self._key = hashlib.sha256(b"crusader-mail inbox state\0" + secret.encode()).digest()
        self.messages = data.get("messages", {})
        self.replies = data.get("replies", {})
        self.events = data.get("events", {})

    @classmethod
    @contextmanager
    def open(cls, path: Path, secret: str) -> Iterator[InboxState]:
        """Load under the lock; save (atomically) when the block ends without an error."""
        with locked(path):
            state = cls(path, secret, cls._load(path))
            before = state._dump()
            yield state
            after = state._dump()
            if after != before:
                atomic_write(path, after)

    @staticmethod
    def _load(path: Path) -> dict[str, dict[str, str]]:
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StateError(f"{path}: damaged inbox state ({error}); fix or remove it") from None
        if not isinstance(data, dict) or data.get("version") != InboxState.VERSION:
            raise StateError(f"{path}: not an inbox state file of version {InboxState.VERSION}")
        sections = {k: data.get(k, {}) for k in ("messages", "replies", "events")}
        for name, section in sections.items():
            if not isinstance(section, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in section.items()
            ):
                raise StateError(f"{path}: '{name}' is damaged; fix or remove the file")
        return sections

    def _dump(self) -> str:
        data = {
            "version": self.VERSION,
            "messages": dict(sorted(self.messages.items())),
            "replies": dict(sorted(self.replies.items())),
            "events": dict(sorted(self.events.items())),
        }
        return json.dumps(data, indent=1, sort_keys=False) + "\n"

    def _hash(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def seen(self, message_key: str) -> bool:
        return self._hash("message", message_key) in self.messages

    def remember(self, message_key: str, now: datetime) -> None:
        self.messages[self._hash("message", message_key)] = _stamp(now)

    def event_seen(self, event_id: str) -> bool:
        return self._hash("event", event_id) in self.events

    def remember_event(self, event_id: str, now: datetime) -> None:
        self.events[self._hash("event", event_id)] = _stamp(now)

    def may_reply(self, kind: str, email: str, now: datetime, window: timedelta) -> bool:
        last = self.replies.get(self._reply_key(kind, email))
        return last is None or now - datetime.fromisoformat(last) >= window

    def replied(self, kind: str, email: str, now: datetime) -> None:
        self.replies[self._reply_key(kind, email)] = _stamp(now)

    def _reply_key(self, kind: str, email: str) -> str:
        return f"{kind}:{self._hash('address', email.lower())}"

    def prune(self, now: datetime) -> None:
        """Forget reply times older than a day, and handled ids older than 400 days."""

        def fresh(section: dict[str, str], keep: timedelta) -> dict[str, str]:
            return {k: v for k, v in section.items() if now - datetime.fromisoformat(v) < keep}

        self.replies = fresh(self.replies, REPLY_WINDOW)
        self.messages = fresh(self.messages, KEEP_SEEN)
        self.events = fresh(self.events, KEEP_SEEN)


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds")


# --- processing ---------------------------------------------------------------------------------


def token_hint(token: str) -> bytes | None:
    """The address hint inside a token (see :mod:`crusader_mail.util.tokens`), None when malformed."""
    cleaned = token.strip().upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        return None
    return raw[2:8] if len(raw) == 18 else None


class AddressIndex:
    """Finds the readers a token may belong to by its keyed hint, without scanning per token."""

    def __init__(self, signer: Signer, emails: Iterable[str]) -> None:
        self.signer = signer
        self._by_hint: dict[bytes, list[str]] = {}
        for email in emails:
            self.add(email)

    def add(self, email: str) -> None:
        bucket = self._by_hint.setdefault(self.signer.hint(email), [])
        if email not in bucket:
            bucket.append(email)

    def candidates(self, token: str) -> list[str]:
        hint = token_hint(token)
        return list(self._by_hint.get(hint, [])) if hint is not None else []


def process_messages(messages: Iterable[RawMessage], ctx: InboxContext) -> InboxReport:
    """Handle each message once; save the list and the inbox state; return what was done."""
    report = InboxReport()
    with ctx_state(ctx) as state, ctx.readers.edit() as roster:
        handler = InboxActions(ctx, roster, state)
        for raw in messages:
            report.processed += 1
            report.actions.append(handler.handle(raw))
    return report


@contextmanager
def ctx_state(ctx: InboxContext) -> Iterator[InboxState]:
    """The inbox state, locked for the block and saved when it ends without an error.
    Lock order everywhere: inbox state first, then the subscriber list."""
    with InboxState.open(ctx.state_path, ctx.settings.require_secret_key()) as state:
        yield state
        state.prune(ctx.clock.now())


_ACTIVE_OR_PENDING = {Status.ACTIVE, Status.PENDING}


class InboxActions:
    """The actions behind commands, shared by the mail processor and the web endpoints."""

    def __init__(
        self,
        ctx: InboxContext,
        roster: Roster,
        state: InboxState,
        *,
        index: AddressIndex | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.roster = roster
        self.state = state
        self.replies = Replies(ctx.settings)
        self._index = index

    # -- one message --

    def handle(self, raw: RawMessage) -> Action:
        if raw.size > self.ctx.max_bytes or len(raw.data) > self.ctx.max_bytes:
            mib = self.ctx.max_bytes // (1024 * 1024)
            return Action("", "skipped", f"over {mib} MB ({raw.size} bytes): not read", raw.origin)
        message = classify.parse(raw.data)
        message_id, key = self._identity(message, raw.data)
        if self.state.seen(key):
            return Action(message_id, "duplicate", "handled before: nothing to do", raw.origin)
        try:
            command, result = self._dispatch(message, message_id, raw)
        except CrusaderMailError as error:
            command, result = "error", str(error)
        except Exception as error:
            command, result = "error", f"could not handle this message ({type(error).__name__})"
        self.state.remember(key, self.ctx.clock.now())
        # results quote headers and error messages: no address may pass unmasked
        return Action(message_id, command, mask_addresses(result), raw.origin)

    def _identity(self, message: Message, data: bytes) -> tuple[str, str]:
        message_id = classify.header(message, "Message-ID")[:200]
        if message_id:
            return message_id, "mid:" + message_id
        digest = hashlib.sha256(data).hexdigest()
        return f"sha256:{digest[:16]}", "sha256:" + digest

    def _dispatch(self, message: Message, ref: str, raw: RawMessage) -> tuple[str, str]:
        sort = classify.classify(message, self.settings)
        if sort.kind in {Kind.LOOP, Kind.AUTO_REPLY}:
            return sort.kind.value, f"ignored: {sort.reason}"
        if sort.kind is Kind.BOUNCE:
            return sort.kind.value, self._mark(sort.hard, Status.BOUNCED, ref, sort.soft)
        if sort.kind is Kind.COMPLAINT:
            return sort.kind.value, self._mark(sort.hard, Status.COMPLAINED, ref, ())
        parsed = parse_command(message, self.settings, raw.envelope_to)
        if parsed is None:
            return "none", "not a command: no reply"
        if parsed.token:
            if parsed.command is Command.CONFIRM:
                return parsed.command.value, self._confirm_token(parsed.token, ref)
            return parsed.command.value, self._unsubscribe_token(parsed.token, ref)
        sender = self._sender(message)
        if sender is None:
            return parsed.command.value, "ignored: no valid From address"
        if parsed.command is Command.SUBSCRIBE:
            name = classify.display_name(message)
            return parsed.command.value, self.subscribe(sender, name, ref, Source.EMAIL)
        if parsed.command is Command.UNSUBSCRIBE:
            proven = raw.authenticated or authenticated(message, self.settings, sender)
            return parsed.command.value, self._unsubscribe_plain(sender, proven, ref)
        return parsed.command.value, self._help(sender)

    def _sender(self, message: Message) -> str | None:
        found = classify.addresses(message, "From")
        if len(found) != 1:
            return None
        try:
            return normalize_email(found[0])
        except InvalidAddress:
            return None

    # -- actions --

    def subscribe(self, email: str, name: str, ref: str, via: Source) -> str:
        shown = mask_email(email)
        current = self.roster.get(email)
        if current is not None and current.status is Status.ACTIVE:
            sent = self._reply_limited(ReplyKind.ALREADY, email, headers=self._list_headers(email))
            return f"{shown} is already subscribed; " + _said(sent, "told so")
        self.roster.request(email, name=name, via=via, ref=ref)
        self.index.add(email)
        token = self.ctx.signer.make(Purpose.CONFIRM, email, self.ctx.clock.now())
        sent = self._reply_limited(ReplyKind.CONFIRM, email, token=token)
        return f"{shown} pending; " + _said(sent, "confirmation sent")

    def _confirm_token(self, token: str, ref: str) -> str:
        try:
            email = self.find(Purpose.CONFIRM, token, max_age_days=CONFIRM_DAYS)
        except TokenExpired:
            return "token expired: nothing changed"
        except TokenError:
            return "token not valid: nothing changed"
        return self.confirm(email, ref, Source.EMAIL)

    def confirm(self, email: str, ref: str, via: Source) -> str:
        shown = mask_email(email)
        current = self.roster.get(email)
        if current is None or current.status is not Status.PENDING:
            state = current.status.value if current else "not on the list"
            return f"{shown} is {state}: nothing changed"
        self.roster.confirm(email, via=via, ref=ref)
        sent = self._send(ReplyKind.WELCOME, email, headers=self._list_headers(email))
        return f"{shown} confirmed: active" + ("; welcome sent" if sent else "; welcome NOT sent")

    def _unsubscribe_token(self, token: str, ref: str) -> str:
        try:
            email = self.find(Purpose.UNSUBSCRIBE, token, max_age_days=None)
        except TokenError:
            return "token not valid: nothing changed"
        return self.unsubscribe(email, ref, Source.EMAIL)

    def unsubscribe(self, email: str, ref: str, via: Source) -> str:
        shown = mask_email(email)
        current = self.roster.get(email)
        if current is None or current.status not in _ACTIVE_OR_PENDING:
            state = current.status.value if current else "not on the list"
            return f"{shown} is {state}: nothing changed"
        self.roster.unsubscribe(email, via=via, ref=ref)
        sent = self._send(ReplyKind.GOODBYE, email)
        return f"{shown} unsubscribed" + ("; goodbye sent" if sent else "; goodbye NOT sent")

    def _unsubscribe_plain(self, email: str, proven: bool, ref: str) -> str:
        current = self.roster.get(email)
        if current is None or current.status not in _ACTIVE_OR_PENDING:
            state = current.status.value if current else "not on the list"
            return f"{mask_email(email)} is {state}: nothing changed, no reply"
        if proven:
            return self.unsubscribe(email, ref, Source.EMAIL)
        token = self.ctx.signer.make(Purpose.UNSUBSCRIBE, email, self.ctx.clock.now())
        sent = self._reply_limited(ReplyKind.LEAVE, email, token=token)
        return f"{mask_email(email)} not authenticated; " + _said(sent, "asked to confirm leaving")

    def _help(self, email: str) -> str:
        return _said(self._reply_limited(ReplyKind.HELP, email), "help sent")

    def _mark(self, emails: Iterable[str], status: Status, ref: str, soft: Iterable[str]) -> str:
        done: list[str] = []
        for raw_email in emails:
            try:
                email = normalize_email(raw_email)
            except InvalidAddress:
                continue
            current = self.roster.get(email)
            if current is not None and current.status in _ACTIVE_OR_PENDING:
                self.roster.mark(email, status, via=Source.EMAIL, ref=ref)
                done.append(mask_email(email))
        soft_count = len(list(soft))
        parts = [f"{status.value}: {', '.join(done)}" if done else "no reader on the list changed"]
        if soft_count:
            parts.append(f"{soft_count} temporary failure(s) ignored")
        return "; ".join(parts)

    # -- tokens --

    @property
    def index(self) -> AddressIndex:
        if self._index is None:
            self._index = AddressIndex(self.ctx.signer, (s.email for s in self.roster))
        return self._index

    def find(self, purpose: Purpose, token: str, max_age_days: int | None) -> str:
        """The reader ``token`` was made for; TokenError when there is none."""
        return self.ctx.signer.verify(
            purpose, token, self.index.candidates(token), self.ctx.clock.now(), max_age_days
        )

    # -- replies --

    def _list_headers(self, email: str) -> dict[str, str]:
        try:
            made = list_headers(self.settings, self.ctx.signer, email, self.ctx.clock.now())
        except CrusaderMailError:
            return {}
        return {k: v for k, v in made.items() if k.lower().startswith("list-unsubscribe")}

    def _reply_limited(
        self, kind: ReplyKind, email: str, *, token: str = "", headers: dict[str, str] | None = None
    ) -> str:
        """ "sent", "limited" (one a day already went out) or "failed" (not counted)."""
        now = self.ctx.clock.now()
        if not self.state.may_reply(kind.value, email, now, REPLY_WINDOW):
            return "limited"
        if not self._send(kind, email, token=token, headers=headers):
            return "failed"
        self.state.replied(kind.value, email, now)
        return "sent"

    def _send(
        self, kind: ReplyKind, email: str, *, token: str = "", headers: dict[str, str] | None = None
    ) -> bool:
        message = self.replies.build(kind, email, token=token, headers=headers)
        try:
            self.ctx.mailer.send_one(message)
        except CrusaderMailError:
            return False
        return True


def _said(outcome: str, done: str) -> str:
    if outcome == "sent":
        return done
    if outcome == "limited":
        return "no reply (one already went out in the last 24 hours)"
    return "reply NOT sent (the mailer failed; a new request will retry)"
