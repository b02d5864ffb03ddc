"""What a person's message asks for: a command by address or by words, and whether the sender
is authenticated.

A message is a command by its address (``news+subscribe@``, ``+unsubscribe@``,
``+confirm-<token>@``, ``+unsubscribe-<token>@`` in To/Cc/Delivered-To/X-Original-To or the
envelope) or its words (Subject or first non-quoted body line: subscribe/join,
unsubscribe/leave/stop/remove, ``confirm <token>``, ``unsubscribe <token>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

from crusader_mail.inbox import classify
from crusader_mail.settings import Settings


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
