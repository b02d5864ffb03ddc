"""The dry-run outbox: what a send would do, written to ``settings.outbox_dir``.

A dry run (``deliver`` or ``send_test`` given a
:class:`~crusader_mail.delivery.transport.DryRunTransport`) builds every request body exactly as
a real send would and hands each to :class:`Outbox`, which writes

- ``request-0001.json`` … ``request-0003.json``: the first request bodies, verbatim (the JSON
  value the sendgrid client would POST, pretty-printed);
- ``summary.json``: counts for all of them (requests, readers, bytes, the largest request,
  SendGrid limits crossed), masked sample recipients, notes, and the would-be ``SendReport``;
- ``first-reader.eml``: one complete RFC 5322 message (multipart/alternative, text then html,
  ``List-Unsubscribe*`` and ``List-Id`` headers, placeholders filled) of what the first reader
  would receive, made from the first personalization of the first request the way SendGrid does
  (SendGrid's own unsubscribe link, with subscription tracking, shows as
  :data:`SENDGRID_LINK_STAND_IN`).

Beside them the dry run writes the newsletter an editor opens (``newsletter.html``,
``newsletter.txt``, ``subject.txt``: :func:`crusader_mail.pipeline.write_newsletter`) with the
per-reader placeholders filled for :data:`SAMPLE_READER` (:func:`sample_values`), a clearly
fake reader, never a real one: the newsletter workflow keeps these three files as a
downloadable artifact of a dry run, while the ``.eml`` (the first real reader's copy) stays here.

The outbox is output, not state: earlier ``request-*.json``, ``summary.json`` and
``first-reader.eml`` are replaced; other files (the newsletter files) are left alone.
These files hold real addresses and must never be committed: ``/outbox/`` is in the project's
``.gitignore``, and the folder also carries its own ``.gitignore`` (``*``), so it stays out of git
wherever ``outbox_dir`` points (even inside a committed ``state_dir``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path
from typing import Any

from crusader_mail.clock import Clock
from crusader_mail.delivery.body import RequestBody
from crusader_mail.delivery.links import personal_values
from crusader_mail.models import Placeholder, RenderedIssue, SendReport, Status, Subscriber
from crusader_mail.settings import Settings
from crusader_mail.util.masking import mask_email
from crusader_mail.util.statefile import atomic_write
from crusader_mail.util.tokens import Signer

KEEP_REQUESTS = 3
SUMMARY = "summary.json"
EML = "first-reader.eml"
MAX_REQUEST_BYTES = 30 * 1024 * 1024
MAX_SUBSTITUTION_BYTES = 10_000
SAMPLE = 5
GITIGNORE = ".gitignore"
SENDGRID_LINK_STAND_IN = "https://sendgrid.invalid/unsubscribe-link-added-by-sendgrid"
"""Stands in the .eml and the newsletter files for the link SendGrid's subscription tracking
puts in each message."""
SAMPLE_READER = Subscriber(
    email="sample.reader@example.com", name="Sample Reader", status=Status.ACTIVE
)
"""The reader a dry run's ``newsletter.html`` is filled for (example.com: reserved, nobody's)."""
THROWAWAY_NOTE = (
    "secret_key is not set: unsubscribe tokens were signed with a throwaway key "
    "(the links in this outbox will not work)"
)


def sample_values(settings: Settings, now: datetime) -> dict[Placeholder, str]:
    """The placeholder values of :data:`SAMPLE_READER`: the address, name, unsubscribe link
    and preferences link a reader's copy would carry (SendGrid's stand-in for the first with
    subscription tracking), the links signed with a throwaway key, so they have the real shape
    and open nobody's page."""
    values = personal_values(settings, Signer(secrets.token_urlsafe(32)), SAMPLE_READER, now)
    if settings.sendgrid.subscription_tracking:
        values[Placeholder.UNSUBSCRIBE_URL] = SENDGRID_LINK_STAND_IN
    return values


def request_name(index: int) -> str:
    return f"request-{index + 1:04d}.json"


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Plain substitution, as SendGrid applies ``substitutions`` to subject and content."""
    for key, value in values.items():
        text = text.replace(key, value)
    return text


class Outbox:
    def __init__(
        self,
        folder: Path,
        issue: RenderedIssue,
        settings: Settings,
        clock: Clock,
        *,
        throwaway_key: bool,
    ) -> None:
        self.folder = folder
        self.issue = issue
        self.settings = settings
        self.clock = clock
        self.notes: list[str] = [THROWAWAY_NOTE] if throwaway_key else []
        self.requests = 0
        self.readers = 0
        self.bytes_total = 0
        self.largest = 0
        self.written: list[str] = []
        self.sample: list[str] = []
        self.problems: list[str] = []
        self.eml: Path | None = None
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / GITIGNORE
        if not ignore.exists():
            atomic_write(
                ignore, "# dry-run output holds subscriber addresses: never commit it\n*\n"
            )
        for stale in [*folder.glob("request-*.json"), folder / SUMMARY, folder / EML]:
            stale.unlink(missing_ok=True)

    def add(self, request: RequestBody) -> None:
        """One request body, in sending order."""
        index = self.requests
        self.requests += 1
        body = request.value()
        people = body.get("personalizations", [])
        self.readers += len(people)
        size = len(request.data)  # what a real send POSTs
        self.bytes_total += size
        self.largest = max(self.largest, size)
        if size > MAX_REQUEST_BYTES:
            self.problems.append(f"request {index + 1} is {size} bytes, over SendGrid's 30 MB")
        for person in people:
            subs = person.get("substitutions", {})
            used = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
            if used > MAX_SUBSTITUTION_BYTES:
                who = mask_email(person["to"][0]["email"])
                self.problems.append(
                    f"request {index + 1}: substitutions for {who} over 10,000 bytes"
                )
            if len(self.sample) < SAMPLE:
                self.sample.append(mask_email(person["to"][0]["email"]))
        if index < KEEP_REQUESTS:
            name = request_name(index)
            atomic_write(self.folder / name, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
            self.written.append(name)
        if self.eml is None and people:
            self.eml = self.folder / EML
            atomic_write(self.eml, build_eml(body, 0, self.settings, self.clock))

    def finish(self, report: SendReport, skipped: Mapping[str, int]) -> Path:
        summary = {
            "dry_run": True,
            "issue": self.issue.issue_id,
            "subject": self.issue.subject,
            "from": self.settings.newsletter.from_email,
            "sandbox_mode": self.settings.sendgrid.sandbox_mode,
            "recipients": report.recipients,
            "requests": self.requests,
            "readers_in_requests": self.readers,
            "batch_size": self.settings.sendgrid.batch_size,
            "bytes_total": self.bytes_total,
            "largest_request_bytes": self.largest,
            "request_files": self.written,
            "requests_not_written": max(0, self.requests - len(self.written)),
            "eml": self.eml.name if self.eml else None,
            "sample_recipients": self.sample,
            "skipped": dict(skipped),
            "problems": self.problems,
            "notes": self.notes,
            "report": report.model_dump(mode="json"),
        }
        path = self.folder / SUMMARY
        atomic_write(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        return path


def build_eml(body: Mapping[str, Any], index: int, settings: Settings, clock: Clock) -> bytes:
    """The message SendGrid would make for personalization ``index`` of ``body``."""
    person = body["personalizations"][index]
    values: dict[str, str] = dict(person.get("substitutions", {}))
    tracking = body.get("tracking_settings", {}).get("subscription_tracking", {})
    if tracking.get("enable") and tracking.get("substitution_tag"):
        values.setdefault(tracking["substitution_tag"], SENDGRID_LINK_STAND_IN)
    sender = body["from"]
    recipient = person["to"][0]
    message = EmailMessage()
    message["From"] = formataddr((sender.get("name", ""), sender["email"]))
    message["To"] = formataddr((recipient.get("name", ""), recipient["email"]))
    message["Subject"] = substitute(person.get("subject") or body["subject"], values)
    message["Date"] = format_datetime(clock.now())
    domain = str(sender["email"]).rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    if "reply_to" in body:
        message["Reply-To"] = body["reply_to"]["email"]
    for name, value in {**body.get("headers", {}), **person.get("headers", {})}.items():
        message[name] = value
    parts = {part["type"]: substitute(part["value"], values) for part in body["content"]}
    message.set_content(parts.get("text/plain", ""), subtype="plain", cte="quoted-printable")
    if "text/html" in parts:
        message.add_alternative(parts["text/html"], subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=SMTP)
