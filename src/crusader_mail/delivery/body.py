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
A transactional message (confirm, welcome, goodbye) is one body with one personalization.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crusader_mail.delivery.links import (
    SENDGRID_LINK_TAG,
    clean_name,
    headers_for,
    placeholder_values,
    proof_header,
    unsubscribe_links,
)
from crusader_mail.models import OutgoingMessage, RenderedIssue
from crusader_mail.settings import Settings
from crusader_mail.util.tokens import Signer


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


class BodyBuilder:
    """Builds ``/v3/mail/send`` bodies for one issue: the shared part once, then per reader."""

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
        self.signer = signer
        self.now = now
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
        self.shared = shared

    def personalization(self, email: str, name: str) -> dict[str, Any]:
        links = unsubscribe_links(self.settings, self.signer, email, self.now)
        values = placeholder_values(email, name, links)
        substitutions = {str(key): value for key, value in values.items()}
        if self.sendgrid_link:
            del substitutions[SENDGRID_LINK_TAG]
        return {
            "to": [_recipient(email, name)],
            "substitutions": substitutions,
            "headers": {
                **headers_for(self.settings, links),
                **proof_header(self.signer, email, self.issue_id),
            },
        }

    def body(self, personalizations: list[dict[str, Any]]) -> dict[str, Any]:
        return {"personalizations": personalizations, **self.shared}


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
