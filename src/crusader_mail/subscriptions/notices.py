"""The short plain-text mails a reader gets back: confirm, reminder, welcome, already, goodbye,
leave, help.

Contract: ``Replies(settings).build(kind, to_email, token=..., headers=..., values=...) ->
OutgoingMessage``.

Each reply is a Jinja template ``templates_dir/mail/<kind>.txt`` whose first line is
``Subject: ...`` followed by a blank line and the body. Every reply is plain text, goes to one
address only, and carries ``List-Id``, ``Auto-Submitted: auto-replied`` (so auto-responders stay
quiet), ``X-Auto-Response-Suppress: All`` and ``X-Crusader-Mail: <kind>`` (so it is recognised
if it ever comes back). Nothing from an incoming message is copied into a header.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import quote, urlencode

import jinja2

from crusader_mail.errors import TemplateError
from crusader_mail.models import OutgoingMessage
from crusader_mail.settings import Settings
from crusader_mail.util import addresses


class ReplyKind(StrEnum):
    CONFIRM = "confirm"  # please confirm your subscription (carries a CONFIRM token)
    REMINDER = "reminder"  # a reader added as pending, reminded once (carries a CONFIRM token)
    WELCOME = "welcome"  # you are in
    ALREADY = "already"  # you were already subscribed
    GOODBYE = "goodbye"  # you have left; how to come back
    LEAVE = "leave"  # please confirm you want to leave (carries an UNSUBSCRIBE token)
    HELP = "help"  # the commands


def plus_address(settings: Settings, tag: str) -> str:
    """``news@example.com`` + ``subscribe`` -> ``news+subscribe@example.com``."""
    return addresses.plus_address(settings.command_address, tag)


def link(base: str | None, token: str) -> str:
    """``base?token=...`` (``""`` when the web endpoint is not configured)."""
    if not base:
        return ""
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}{urlencode({'token': token})}"


class Replies:
    """Renders the reply templates; the Jinja environment is built once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(settings.templates_dir / "mail")),
            autoescape=False,  # noqa: S701 - plain text mail, never HTML
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def build(
        self,
        kind: ReplyKind,
        to_email: str,
        *,
        token: str = "",
        headers: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> OutgoingMessage:
        """The reply ``kind`` to ``to_email``; ``values`` are more template variables (the
        reminder's ``expires``)."""
        settings = self.settings
        shown = {
            **(values or {}),
            "name": settings.newsletter.name,
            "site_url": settings.newsletter.site_url,
            "postal_address": settings.newsletter.postal_address,
            "email": to_email,
            "token": token,
            "subscribe_address": plus_address(settings, "subscribe"),
            "unsubscribe_address": plus_address(settings, "unsubscribe"),
            "confirm_address": plus_address(settings, f"confirm-{token}") if token else "",
            "leave_address": plus_address(settings, f"unsubscribe-{token}") if token else "",
            "confirm_link": link(settings.newsletter.confirm_url, token) if token else "",
            "leave_link": link(settings.newsletter.unsubscribe_url, token) if token else "",
            "subscribe_mailto": "mailto:"
            + plus_address(settings, "subscribe")
            + "?subject="
            + quote("subscribe"),
        }
        name = f"{kind.value}.txt"
        try:
            rendered = self._env.get_template(name).render(shown)
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"{settings.templates_dir / 'mail' / name}: reply template not found"
            ) from None
        except jinja2.TemplateError as error:
            line = getattr(error, "lineno", None)
            where = f" line {line}" if line else ""
            raise TemplateError(f"mail/{name}{where}: {error}") from None
        subject, text = _split(rendered, name)
        all_headers = dict(headers or {})
        all_headers.update(
            {
                "List-Id": _one_line(settings.list_id),
                "Auto-Submitted": "auto-replied",
                "X-Auto-Response-Suppress": "All",
                "X-Crusader-Mail": kind.value,
            }
        )
        return OutgoingMessage(
            to_email=to_email,
            subject=subject,
            text=text,
            headers=all_headers,
            category=f"reply-{kind.value}",
        )


def _split(rendered: str, name: str) -> tuple[str, str]:
    head, sep, body = rendered.partition("\n\n")
    if not sep or not head.startswith("Subject:") or "\n" in head.strip():
        raise TemplateError(f"mail/{name}: must start with 'Subject: ...' and a blank line")
    subject = _one_line(head[len("Subject:") :])
    if not subject:
        raise TemplateError(f"mail/{name}: the subject is empty")
    return subject, body.strip() + "\n"


def _one_line(text: str) -> str:
    """No line breaks or control characters can reach a header."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
