"""What an incoming message is, before anyone reads it as a command.

Contract: :func:`parse` turns raw bytes into a :class:`email.message.Message` without ever
raising; :func:`classify` sorts it into one :class:`Kind`:

- ``LOOP``: our own mail coming back (our ``List-Id``, an ``X-Crusader-Mail`` header, or From
  one of our addresses);
- ``COMPLAINT``: an ARF report (``multipart/report; report-type=feedback-report``);
- ``BOUNCE``: a delivery status notification (``multipart/report; report-type=delivery-status``)
  or one of the common non-standard forms (Exim, Gmail, Postfix prose from MAILER-DAEMON);
  ``hard`` lists the permanently failed (5.x.x) recipients, soft/delayed ones are left out;
- ``AUTO_REPLY``: out-of-office and other automatic mail (``Auto-Submitted``, ``X-Autoreply``,
  ``X-Autorespond``, ``Precedence: bulk/junk/list``, vacation subjects, ``Return-Path: <>``);
- ``OTHER``: written by a person; only these may be commands.

Also the small, safe helpers every reader of a message needs: decoded headers, addresses
(validated, never trusted), the first readable text part, and the proofs (:func:`mail_ids`) a
bounce or complaint returns of the message it answers. What a bounce or complaint *names*
proves nothing: anyone can write a DSN or an ARF report naming anyone.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from enum import StrEnum

from crusader_mail.settings import Settings
from crusader_mail.util.addresses import lower_domain
from crusader_mail.util.html_text import html_to_text
from crusader_mail.util.tokens import MAIL_ID, MAIL_ID_HEADER

__all__ = [
    "Classification",
    "Kind",
    "addresses",
    "body_text",
    "classify",
    "decoded",
    "header",
    "mail_ids",
    "parse",
]


class Kind(StrEnum):
    LOOP = "loop"
    COMPLAINT = "complaint"
    BOUNCE = "bounce"
    AUTO_REPLY = "auto-reply"
    OTHER = "other"


@dataclass(frozen=True)
class Classification:
    kind: Kind
    reason: str  # one short phrase: why it was taken for this kind
    hard: tuple[str, ...] = ()  # bounce: permanently failed recipients; complaint: the reader
    soft: tuple[str, ...] = ()  # bounce: delayed or temporary failures (ignored)


# --- safe message access ------------------------------------------------------------------------


def parse(data: bytes) -> Message:
    """Parse raw bytes; malformed input gives a message with defects, never an exception."""
    if data.startswith(b"From ") and b"\n" in data:  # an mbox "From " line before the headers
        data = data.split(b"\n", 1)[1]
    return email.message_from_bytes(data, policy=email.policy.compat32)


def header(message: Message, name: str) -> str:
    """The decoded value of the first ``name`` header, one line, "" when absent or broken."""
    values = headers(message, name)
    return values[0] if values else ""


def headers(message: Message, name: str) -> list[str]:
    """Every ``name`` header, decoded to one line each (encoded words, 8-bit, folding)."""
    found = message.get_all(name) or []
    return [decoded(value) for value in found]


def decoded(value: object) -> str:
    """One header value decoded to one line (encoded words, 8-bit, folding)."""
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:
        text = str(value)
    return " ".join(text.split())


def addresses(message: Message, *names: str) -> list[str]:
    """Bare addresses (lower-cased domain, no display name) found in the named headers."""
    raw: list[str] = []
    for name in names:
        raw.extend(str(value) for value in message.get_all(name) or [])
    found: list[str] = []
    for _display, address in getaddresses(raw):
        address = address.strip().strip("<>").strip()
        if "@" in address and not any(ch.isspace() for ch in address):
            found.append(lower_domain(address))
    return found


def display_name(message: Message, name: str = "From") -> str:
    """The decoded display name of the first address in ``name``; control characters removed."""
    raw = message.get(name)
    if raw is None:
        return ""
    try:
        pairs = getaddresses([str(raw)])
    except Exception:
        return ""
    if not pairs:
        return ""
    text = decoded(pairs[0][0])
    text = "".join(ch for ch in text if ch.isprintable())
    return text.strip(" \"'")[:100]


def body_text(message: Message, limit: int = 100_000) -> str:
    """The first text/plain part (else the text of text/html), decoded, at most ``limit``."""
    plain = _first_part(message, "text/plain")
    if plain is not None:
        return _part_text(plain)[:limit]
    html = _first_part(message, "text/html")
    if html is not None:
        return html_to_text(_part_text(html))[:limit]
    return ""


def _first_part(message: Message, content_type: str) -> Message | None:
    for part in _walk(message):
        if part.get_content_type() == content_type and not part.get_filename():
            return part
    return None


def _walk(message: Message) -> Iterator[Message]:
    """Parts of the message itself, not of attached messages (message/rfc822 is not entered)."""
    yield message
    if message.is_multipart() and message.get_content_maintype() != "message":
        payload = message.get_payload()
        if isinstance(payload, list):
            for part in payload:
                if isinstance(part, Message):
                    yield from _walk(part)


MAX_PROOFS = 20
_PROOF_IN_TEXT = re.compile(rf"{MAIL_ID_HEADER}\s*:\s*({MAIL_ID.pattern})", re.IGNORECASE)


def mail_ids(message: Message, limit: int = MAX_PROOFS) -> list[str]:
    """The :data:`~crusader_mail.util.tokens.MAIL_ID_HEADER` values a message carries, at most
    ``limit``, distinct: in the headers of every part and of the messages it returns
    (``message/rfc822``), and in the text of every text part (``text/rfc822-headers``, a prose
    bounce quoting the original). Only their MAC says whom each one proves."""
    found: dict[str, None] = {}
    for part in _walk_deep(message):
        values = [decoded(value) for value in part.get_all(MAIL_ID_HEADER) or []]
        if part.get_content_maintype() == "text":
            values += [match.group(1) for match in _PROOF_IN_TEXT.finditer(_part_text(part))]
        for value in values:
            found[value.strip().lower()] = None
            if len(found) >= limit:
                return list(found)
    return list(found)


def _walk_deep(message: Message, depth: int = 0) -> Iterator[Message]:
    """Every part, and the parts of the messages it carries (``message/rfc822``), down to
    ``_MAX_DEPTH`` levels."""
    yield message
    payload = message.get_payload() if message.is_multipart() else None
    if isinstance(payload, list) and depth < _MAX_DEPTH:
        for part in payload:
            if isinstance(part, Message):
                yield from _walk_deep(part, depth + 1)


_MAX_DEPTH = 12


def _part_text(part: Message) -> str:
    try:
        raw = part.get_payload(decode=True)
    except Exception:
        raw = None
    if not isinstance(raw, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


# --- classification -----------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ _-]?(reply|response|antwort)|auto:|autoreply|out of (the )?office|"
    r"ooo\b|on vacation|vacation|away from (my|the) (desk|office)|abwesenheit|"
    r"r[ée]ponse automatique|absence|respuesta autom[aá]tica|automatisch antwoord|"
    r"risposta automatica|autosvar)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver(ed|able)|delivery (status notification|failure|has failed|notification)|"
    r"returned mail|mail delivery failed|failure notice|bounce notification|"
    r"could not be delivered|could not send message|non[- ]?delivery|message not delivered|"
    r"delayed mail|delivery delayed)",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ORIGINAL_MARKER = re.compile(
    r"^(-+ ?(this is a copy of|original message|below this line|the original|"
    r"returned message)|.*original message follows|bounced e-?mail:)",
    re.IGNORECASE | re.MULTILINE,
)
_PERMANENT = re.compile(
    r"(failed permanently|permanent (error|failure)|user unknown|unknown user|"
    r"no such (user|mailbox)|does not exist|mailbox unavailable|address rejected)",
    re.IGNORECASE,
)


def classify(message: Message, settings: Settings) -> Classification:
    """Sort one parsed message (see the module docstring); never raises."""
    loop = _loop_reason(message, settings)
    if loop:
        return Classification(Kind.LOOP, loop)
    content_type = message.get_content_type()
    report_type = str(message.get_param("report-type", "") or "").lower()
    if content_type == "multipart/report" and report_type == "feedback-report":
        return Classification(Kind.COMPLAINT, "ARF feedback report", hard=_complained(message))
    if content_type == "multipart/report" and _has_part(message, "message/delivery-status"):
        return _dsn(message)
    prose = _prose_bounce(message)
    if prose is not None:
        return prose
    auto = _auto_reason(message)
    if auto:
        return Classification(Kind.AUTO_REPLY, auto)
    return Classification(Kind.OTHER, "written by a person")


def _ours(settings: Settings) -> set[str]:
    command = settings.command_address.lower()
    local, _, domain = command.rpartition("@")
    ours = {settings.newsletter.from_email.lower(), command}
    if settings.newsletter.reply_to:
        ours.add(settings.newsletter.reply_to.lower())
    ours.add(f"{local}@{domain}")
    return ours


def _is_ours(address: str, settings: Settings) -> bool:
    address = address.lower()
    if address in _ours(settings):
        return True
    local, _, domain = address.rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}@{domain}" in _ours(settings)


def _loop_reason(message: Message, settings: Settings) -> str:
    if message.get("X-Crusader-Mail") is not None:
        return "carries our X-Crusader-Mail header"
    list_id = header(message, "List-Id").lower()
    ours = settings.list_id.lower()
    ours_id = ours[ours.find("<") :] if "<" in ours else ours
    if list_id and ours_id in list_id:
        return "carries our List-Id"
    senders = addresses(message, "From")
    if senders and _is_ours(senders[0], settings):
        return "sent from our own address"
    return ""


def _auto_reason(message: Message) -> str:
    auto_submitted = header(message, "Auto-Submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return f"Auto-Submitted: {auto_submitted[:40]}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autorespond-Id", "X-Autoresponder"):
        if message.get(name) is not None:
            return f"{name} header"
    precedence = header(message, "Precedence").lower()
    if precedence in {"bulk", "junk", "list", "auto_reply"}:
        return f"Precedence: {precedence}"
    if header(message, "X-Auto-Response-Suppress").lower() in {
        "all",
        "oof",
    } and _AUTO_SUBJECT.search(header(message, "Subject")):
        return "Exchange automatic reply"
    if _AUTO_SUBJECT.search(_strip_reply_prefix(header(message, "Subject"))):
        return "automatic-reply subject"
    return_path = header(message, "Return-Path").strip()
    if return_path.replace(" ", "") == "<>":
        return "null Return-Path"
    if message.get("List-Id") is not None or message.get("List-Unsubscribe") is not None:
        return "mail from another mailing list"
    return ""


def _strip_reply_prefix(subject: str) -> str:
    return re.sub(r"^\s*((re|aw|fw|fwd|wg|sv|vs)\s*:\s*)+", "", subject, flags=re.IGNORECASE)


def _has_part(message: Message, content_type: str) -> bool:
    return any(part.get_content_type() == content_type for part in _walk(message))


def _dsn(message: Message) -> Classification:
    """Read the per-recipient fields of an RFC 3464 delivery-status part."""
    hard: list[str] = []
    soft: list[str] = []
    for part in _walk(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _status_blocks(part):
            # Original-Recipient is the address as we sent it (before aliases were expanded)
            found = [
                _field_address(block.get(name))
                for name in ("original-recipient", "final-recipient")
            ]
            recipients = [address for address in dict.fromkeys(found) if address]
            if not recipients:
                continue
            action = block.get("action", "").lower()
            status = _STATUS.search(block.get("status", ""))
            code = status.group(1) if status else ""
            if code == "5" or (not code and action == "failed"):
                hard.extend(recipients)
            elif action in {"failed", "delayed"} or code == "4":
                soft.extend(recipients)
    failed = addresses(message, "X-Failed-Recipients")
    if not hard and not soft and failed:
        codes = {m.group(1) for m in _STATUS.finditer(_notification(message))}
        (soft if codes == {"4"} else hard).extend(failed)
    return Classification(
        Kind.BOUNCE, "delivery status notification", hard=_unique(hard), soft=_unique(soft)
    )


def _status_blocks(part: Message) -> Iterator[dict[str, str]]:
    """The header-like blocks of a delivery-status body (per-message, then per-recipient)."""
    payload = part.get_payload()
    texts: list[str] = []
    if isinstance(payload, list):  # compat32 parses it as a list of header blocks
        for block in payload:
            if isinstance(block, Message):
                yield {key.lower(): decoded(value) for key, value in block.items()}
        return
    if isinstance(payload, str):
        texts.append(payload)
    for text in texts:
        for chunk in re.split(r"\r?\n\s*\r?\n", text):
            fields: dict[str, str] = {}
            for line in chunk.splitlines():
                key, sep, value = line.partition(":")
                if sep and key and not key[0].isspace():
                    fields[key.strip().lower()] = value.strip()
            if fields:
                yield fields


def _field_address(value: str | None) -> str:
    if not value:
        return ""
    _kind, _, address = value.partition(";")
    address = (address or value).strip().strip("<>").strip()
    match = _ADDRESS.search(address)
    return lower_domain(match.group(0)) if match else ""


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _notification(message: Message) -> str:
    """The human-readable notice of a bounce, without the returned original below it."""
    text = body_text(message, limit=50_000)
    marker = _ORIGINAL_MARKER.search(text)
    return text[: marker.start()] if marker else text


def _prose_bounce(message: Message) -> Classification | None:
    """Bounces without a delivery-status part: Exim, Gmail, qmail, and kin."""
    senders = addresses(message, "From")
    sender = senders[0] if senders else ""
    from_daemon = bool(_DAEMON.match(sender)) or "mail delivery" in header(message, "From").lower()
    failed = addresses(message, "X-Failed-Recipients")
    subject = header(message, "Subject")
    if not (failed or (from_daemon and _BOUNCE_SUBJECT.search(subject))):
        return None
    notice = _notification(message)
    codes = {m.group(1) for m in _STATUS.finditer(notice)}
    smtp = {m.group(1) for m in re.finditer(r"(?<!\d)([45])\d\d[ -]", notice)}
    permanent = "5" in codes or "5" in smtp or bool(_PERMANENT.search(notice))
    temporary = not permanent and ("4" in codes or "4" in smtp)
    recipients = failed
    if not recipients:
        own = set(addresses(message, "From", "To", "Cc", "Delivered-To", "X-Original-To"))
        recipients = [
            lower_domain(a) for a in _ADDRESS.findall(notice) if lower_domain(a) not in own
        ]
    if permanent:
        return Classification(Kind.BOUNCE, "bounce notice (permanent)", hard=_unique(recipients))
    reason = "bounce notice (temporary)" if temporary else "bounce notice (no permanent status)"
    return Classification(Kind.BOUNCE, reason, soft=_unique(recipients))


def _complained(message: Message) -> tuple[str, ...]:
    """The reader an ARF report is about: Original-Rcpt-To, else the reported message's To."""
    found: list[str] = []
    for part in _walk(message):
        if part.get_content_type() == "message/feedback-report":
            for block in _status_blocks(part):
                address = _field_address(block.get("original-rcpt-to"))
                if address:
                    found.append(address)
    if not found:
        for part in _walk(message):
            if part.get_content_type() in {"message/rfc822", "text/rfc822-headers"}:
                inner = _inner_message(part)
                if inner is not None:
                    found.extend(addresses(inner, "To"))
                break
    return _unique(found)


def _inner_message(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        return email.message_from_string(payload, policy=email.policy.compat32)
    return None
