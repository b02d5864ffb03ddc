"""What a person's message asks for: a command by address or by words, and whether the sender
is authenticated.

A message is a command by its address (``news+subscribe@``, ``+unsubscribe@``,
``+confirm-<token>@``, ``+unsubscribe-<token>@`` in To/Cc/Delivered-To/X-Original-To or the
envelope) or by its words, which must be the whole line (:func:`parse_words`):

- the Subject (after ``Re:``/``Fwd:`` and ``[tags]``): ``subscribe``, ``Please unsubscribe me``,
  ``join``, ``leave``, ``stop``, ``remove``, ``help``, with a few polite words around them
  (``Stop Discounting Your Services`` is a title, not a command). A tokened line is never read
  from a subject: our own confirmation's subject carries its token, and whoever echoes it (a
  ticket system, an auto-acknowledgement) has not confirmed anything;
- the first line of the body that is not quoted: the same words, or ``confirm <token>`` /
  ``unsubscribe <token>``.

A reply (``In-Reply-To`` or ``References``: to an issue, to our help or confirmation mail) is a
command only by its address or its body, never by its subject.
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


_PREFIXES = re.compile(r"^\s*((re|aw|fw|fwd|wg|sv|vs)\s*:\s*|\[[^\]]*\]\s*)+", re.IGNORECASE)
_TOKEN_LINE = re.compile(
    r"\s*(confirm|unsubscribe)\s*[:\-]?\s*([a-z2-7]{29})\s*[.!]?\s*", re.IGNORECASE
)
_WORDS = {
    "subscribe": Command.SUBSCRIBE,
    "join": Command.SUBSCRIBE,
    "unsubscribe": Command.UNSUBSCRIBE,
    "leave": Command.UNSUBSCRIBE,
    "stop": Command.UNSUBSCRIBE,
    "remove": Command.UNSUBSCRIBE,
    "help": Command.HELP,
}
# fmt: off
_AROUND = frozenset({
    "please", "pls", "plz", "kindly", "hi", "hello", "hey", "dear", "thanks", "thank", "you",
    "i", "want", "would", "like", "to", "me", "us", "my", "from", "of", "the", "this", "your",
    "a", "list", "mailing", "newsletter", "address", "email", "e", "mail", "now",
})
# fmt: on
"""Words a command may come with; any other word makes the line something else."""
_MAX_WORDS = 10
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
    """The command a person's message carries: by address first, then by the words of its
    subject (unless it is a reply) and of its first body line."""
    by_address = _by_address(message, settings, envelope_to)
    if by_address is not None:
        return by_address
    if not is_reply(message):
        found = parse_words(classify.header(message, "Subject"), tokens=False)
        if found is not None:
            return found
    return parse_words(first_line(classify.body_text(message)))


def is_reply(message: Message) -> bool:
    """Does the message answer another (``In-Reply-To`` or ``References``)?"""
    return bool(classify.header(message, "In-Reply-To") or classify.header(message, "References"))


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


def parse_words(line: str, *, tokens: bool = True) -> ParsedCommand | None:
    """The command a whole line is, after ``Re:``/``Fwd:`` and ``[tags]``: one command word
    (``subscribe``, ``Please unsubscribe me``, ``remove me from your list``) with only polite
    words around it, or with ``tokens`` the line ``confirm <token>`` / ``unsubscribe <token>``;
    ``None`` for anything else (a sentence, a title that starts with "Stop")."""
    text = _PREFIXES.sub("", line)
    tokenized = _TOKEN_LINE.fullmatch(text)
    if tokenized:
        if not tokens:
            return None
        word, token = tokenized.group(1).lower(), tokenized.group(2).lower()
        command = Command.CONFIRM if word == "confirm" else Command.UNSUBSCRIBE
        return ParsedCommand(command, token)
    if re.search(r"[^\w\s.,!?;:'’–—-]", text):
        return None  # other signs: a sentence, a link, an address
    words = re.findall(r"[a-z]+", text.lower())
    if not words or len(words) > _MAX_WORDS:
        return None
    if any(word not in _WORDS and word not in _AROUND for word in words):
        return None
    kinds = {_WORDS[word] for word in words if word in _WORDS}
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
    """DKIM, SPF or DMARC pass aligned with the From domain, in the topmost
    ``Authentication-Results`` header, and only when our receiving host provably wrote it: it
    names ``server.trusted_authserv_id``, and every ``Received`` header above it was added by
    our side (:func:`_our_hop`). A header below the topmost one, or below a hop of someone
    else's, may have come with the message: it proves nothing. Only for mail our host
    delivered (IMAP, files); an Inbound Parse post brings SendGrid's own verdict instead."""
    trusted = (settings.server.trusted_authserv_id or "").strip().lower()
    if not trusted:
        return False
    above: list[str] = []
    topmost = None
    for name, value in message.items():
        if name.lower() == "received":
            above.append(classify.decoded(value))
        elif name.lower() == "authentication-results":
            topmost = classify.decoded(value)
            break
    if topmost is None or _authserv(topmost) != trusted:
        return False
    if not all(_our_hop(received, trusted) for received in above):
        return False
    return _aligned_pass(topmost, sender.rpartition("@")[2].lower())


def _authserv(value: str) -> str:
    words = value.split(";", 1)[0].split()
    return words[0].lower() if words else ""


_BY = re.compile(r"\bby\s+([^\s;()]+)", re.IGNORECASE)
_LITERAL = re.compile(r"\[?[0-9a-f.:]+\]?", re.IGNORECASE)


def _our_hop(received: str, trusted: str) -> bool:
    """Was this ``Received`` header added on our receiving side: by the trusted host, another
    host of its domain, or an internal hop known only by its address?"""
    found = _BY.search(received)
    if found is None:
        return True
    host = found.group(1).lower().rstrip(".")
    labels = trusted.split(".")
    domain = ".".join(labels[1:]) if len(labels) > 2 else trusted
    return (
        host in (trusted, domain) or host.endswith("." + domain) or bool(_LITERAL.fullmatch(host))
    )


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
