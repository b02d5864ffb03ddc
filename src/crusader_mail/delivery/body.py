"""The JSON bodies of SendGrid's ``POST /v3/mail/send``.

An issue goes out as one body per batch: the issue's ONE html and text are shared (``text/plain``
before ``text/html``), and each reader is one personalization whose ``to`` holds that reader
only, so nobody sees another address. Per-reader values go in ``substitutions``
(:class:`~crusader_mail.models.Placeholder` keys) and the per-reader ``List-Unsubscribe``
headers and proof header (``X-Crusader-Mail-Id``, :func:`~crusader_mail.delivery.links.proof_header`)
literally in ``personalizations[].headers`` (SendGrid substitutes nothing in headers).
With ``sendgrid.subscription_tracking`` a newsletter body asks SendGrid for its one-click link
(``tracking_settings.subscription_tracking`` with ``substitution_tag`` ``[[unsubscribe_url]]``:
SendGrid puts its URL there and adds its ``List-Unsubscribe`` header), so the reader's
substitutions leave that placeholder to SendGrid.
A newsletter body is made as the bytes sent (:class:`RequestBody`) without a dict per reader:
the shared part is serialized once and each personalization filled into a JSON text template
(:class:`BodyBuilder`), the very bytes ``json.dumps`` makes of the body's value.
A transactional message (confirm, welcome, goodbye) is one body with one personalization.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from crusader_mail.delivery.links import (
    SENDGRID_LINK_TAG,
    Links,
    clean_name,
    headers_for,
    links_for,
    placeholder_values,
)
from crusader_mail.models import OutgoingMessage, RenderedIssue
from crusader_mail.settings import Settings
from crusader_mail.util.tokens import MAIL_ID_HEADER, Signer


def _sender(settings: Settings) -> dict[str, str]:
    news = settings.newsletter
    sender = {"email": news.from_email}
    if news.from_name:
        sender["name"] = news.from_name
    return sender


def _recipient(email: str, name: str) -> dict[str, str]:
    recipient = {"email": email}
    shown = clean_name(name)
    if shown:
        recipient["name"] = shown
    return recipient


def _add_settings(body: dict[str, Any], settings: Settings, *, unsubscribe_group: bool) -> None:
    """What a body carries from the settings: ``reply_to``, the unsubscribe group (newsletters
    only) and sandbox mode."""
    sg = settings.sendgrid
    if settings.newsletter.reply_to:
        body["reply_to"] = {"email": settings.newsletter.reply_to}
    if unsubscribe_group and sg.asm_group_id is not None:
        body["asm"] = {"group_id": sg.asm_group_id}
    if sg.sandbox_mode:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}


@dataclass(frozen=True)
class RequestBody:
    """One ``POST /v3/mail/send`` body: the JSON bytes sent, and how many readers it holds."""

    data: bytes
    readers: int

    def value(self) -> dict[str, Any]:
        """The body as a JSON value."""
        value: dict[str, Any] = json.loads(self.data)
        return value


class BodyBuilder:
    """Builds ``/v3/mail/send`` bodies for one issue: the shared part serialized once, then per
    reader one personalization filled into a JSON text template.

    The templates are :meth:`personalization_value` of stand-in values serialized by
    ``json.dumps`` once, the stand-ins then made slots; a reader's address and name are escaped
    as ``json.dumps`` escapes them, so a body's bytes are exactly ``json.dumps`` of its value
    (ASCII, the default separators)."""

    def __init__(
        self,
        issue: RenderedIssue,
        settings: Settings,
        signer: Signer,
        now: datetime,
        *,
        subject_prefix: str = "",
    ) -> None:
        self.settings = settings
        self.issue_id = issue.issue_id
        content = [{"type": "text/plain", "value": issue.text}] if issue.text else []
        content.append({"type": "text/html", "value": issue.html})
        shared: dict[str, Any] = {
            "from": _sender(settings),
            "subject": subject_prefix + issue.subject,
            "content": content,
            "categories": [settings.sendgrid.category],
            "custom_args": {"issue": issue.issue_id},
        }
        _add_settings(shared, settings, unsubscribe_group=True)
        self.sendgrid_link = settings.sendgrid.subscription_tracking
        if self.sendgrid_link:
            shared["tracking_settings"] = {
                "subscription_tracking": {"enable": True, "substitution_tag": SENDGRID_LINK_TAG}
            }
        self._head = '{"personalizations": ['
        self._tail = "], " + json.dumps(shared)[1:]
        self._codes = signer.send_codes(now, issue.issue_id)
        self._named = self._template(named=True)
        self._unnamed = self._template(named=False)

    def personalization_value(
        self, email: str, name: str, links: Links, mail_id: str
    ) -> dict[str, Any]:
        """One reader's personalization: ``to`` them alone, their placeholder values as
        ``substitutions``, their list headers and proof header (see the module docstring)."""
        substitutions = {
            str(key): value for key, value in placeholder_values(email, name, links).items()
        }
        if self.sendgrid_link:
            del substitutions[SENDGRID_LINK_TAG]
        return {
            "to": [_recipient(email, name)],
            "substitutions": substitutions,
            "headers": {**headers_for(self.settings, links), MAIL_ID_HEADER: mail_id},
        }

    def _template(self, *, named: bool) -> str:
        """The ``%``-template of a personalization: slots ``e`` (the address, as a JSON
        string), ``n`` (the name, as one; the template ``named=False`` has none), ``t`` (the
        unsubscribe token), ``p`` (the preferences token; no slot where serve's pages are not)
        and ``m`` (the mail id), the rest the JSON text ``json.dumps`` makes."""
        mark = "\u00a7" + secrets.token_hex(8)  # printable: clean_name keeps it as it is
        slot = {key: mark + key for key in "entpm"}
        links = links_for(self.settings, slot["t"], slot["p"])
        value = self.personalization_value(slot["e"], slot["n"] if named else "", links, slot["m"])
        text = json.dumps(value).replace("%", "%%")
        for key, stand_in in slot.items():
            escaped = encode_basestring_ascii(stand_in)
            whole = key in "en"  # the whole JSON string, quotes and all; else inside one
            text = text.replace(escaped if whole else escaped[1:-1], f"%({key})s")
        if encode_basestring_ascii(mark)[1:-1] in text:
            raise RuntimeError("a stand-in was left where the body template has no slot")
        return text

    def personalization(self, email: str, name: str) -> str:
        """One reader's personalization (:meth:`personalization_value`), as JSON text."""
        token, preferences, mail_id = self._codes(email)
        shown = clean_name(name)
        values = {"e": encode_basestring_ascii(email), "t": token, "p": preferences, "m": mail_id}
        if shown:
            values["n"] = encode_basestring_ascii(shown)
            return self._named % values
        return self._unnamed % values

    def body(self, personalizations: list[str]) -> RequestBody:
        """The request body of these personalizations (JSON texts)."""
        text = self._head + ", ".join(personalizations) + self._tail
        return RequestBody(text.encode("ascii"), len(personalizations))


def transactional_body(settings: Settings, message: OutgoingMessage) -> dict[str, Any]:
    """The body of one transactional message to one reader."""
    content = [{"type": "text/plain", "value": message.text}]
    if message.html:
        content.append({"type": "text/html", "value": message.html})
    body: dict[str, Any] = {
        "personalizations": [{"to": [_recipient(message.to_email, message.to_name)]}],
        "from": _sender(settings),
        "subject": message.subject,
        "content": content,
        "categories": [message.category],
    }
    if message.headers:
        body["headers"] = dict(message.headers)
    _add_settings(body, settings, unsubscribe_group=False)
    return body
