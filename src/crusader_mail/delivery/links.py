"""What each reader's copy carries of their own: unsubscribe and preferences links, list headers,
placeholder values.

Every unsubscribe link holds a token signed for that reader (:mod:`crusader_mail.util.tokens`):
a ``mailto:`` to ``<command address>+unsubscribe-<token>``, and an https one-click URL when our
one-click counts (:meth:`Settings.leaving` says ``ours``: ``newsletter.unsubscribe_url`` served
from a store the job shares). With ``sendgrid.subscription_tracking`` SendGrid adds its own
one-click header and puts its link where ``[[unsubscribe_url]]`` stands
(:data:`SENDGRID_LINK_TAG`), so we add no second https one. Otherwise the visible link
(``[[unsubscribe_url]]``) is our https URL when there is one, else the mailto.

Where serve's pages are (:meth:`Settings.served_page`: ``newsletter.unsubscribe_url`` over a
store the job shares, whoever handles the one click) a reader's copy also links their
preferences page (``[[preferences_url]]``: ``…/preferences?token=<token>``, a PREFERENCES token
made from the same keyed hash as the unsubscribe token); elsewhere the templates show no such
link and the reader has no such value.

Every message we send also carries its recipient's proof header (:func:`proof_header`,
``X-Crusader-Mail-Id``): a bounce or complaint that returns it proves it answers our mail to
that reader (:mod:`crusader_mail.inbox.process`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from crusader_mail.models import Placeholder, Subscriber
from crusader_mail.settings import Settings
from crusader_mail.util.addresses import plus_address
from crusader_mail.util.tokens import MAIL_ID_HEADER, Purpose, Signer

SENDGRID_LINK_TAG = Placeholder.UNSUBSCRIBE_URL.value
"""With subscription tracking, SendGrid replaces this tag with its own unsubscribe URL."""


@dataclass(frozen=True)
class Links:
    mailto: str  # mailto:news+unsubscribe-<token>@example.com
    https: str | None  # https://…/unsubscribe?token=<token>, when newsletter.unsubscribe_url is set
    preferences: str | None = None  # https://…/preferences?token=<token>, where serve's pages are

    @property
    def visible(self) -> str:
        return self.https or self.mailto


def link_signer(settings: Settings, *, allow_throwaway: bool) -> tuple[Signer, bool]:
    """The signer of the links, and whether its key is a throwaway one: with
    ``allow_throwaway`` (a dry run, a test send) a missing ``secret_key`` is replaced by a random
    key, otherwise it is a :class:`ConfigError`."""
    unset = settings.secret_key is None or not settings.secret_key.get_secret_value()
    if unset and allow_throwaway:
        return Signer(secrets.token_urlsafe(32)), True
    return Signer(settings.require_secret_key()), False


def reader_links(settings: Settings, signer: Signer, email: str, now: datetime) -> Links:
    """The links of ``email``'s copy: unsubscribe, and preferences where serve's pages are."""
    served = settings.served_page("preferences") is not None
    preferences = signer.make(Purpose.PREFERENCES, email, now) if served else None
    return links_for(settings, signer.make(Purpose.UNSUBSCRIBE, email, now), preferences)


def links_for(settings: Settings, token: str, preferences_token: str | None = None) -> Links:
    """The links of an unsubscribe ``token`` (and of a ``preferences_token``, where serve's
    pages are)."""
    mailto = "mailto:" + plus_address(settings.command_address, f"unsubscribe-{token}")
    https = _with_token(our_one_click(settings), token)
    page = settings.served_page("preferences") if preferences_token else None
    return Links(mailto=mailto, https=https, preferences=_with_token(page, preferences_token))


def _with_token(base: str | None, token: str | None) -> str | None:
    """``base`` with ``token=<token>`` added to its query (``None`` without both)."""
    if not base or not token:
        return None
    return f"{base}{'&' if '?' in base else '?'}token={token}"


def our_one_click(settings: Settings) -> str | None:
    """``newsletter.unsubscribe_url`` when it is the one-click link (see the module docstring)."""
    base = settings.newsletter.unsubscribe_url
    if not base or settings.sendgrid.subscription_tracking or not settings.shares_store:
        return None
    return base


def headers_for(settings: Settings, links: Links) -> dict[str, str]:
    """``List-Unsubscribe`` (mailto, plus https one-click when there is one), ``-Post``, ``List-Id``."""
    if links.https:
        return {
            "List-Unsubscribe": f"<{links.mailto}>, <{links.https}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": settings.list_id,
        }
    return {"List-Unsubscribe": f"<{links.mailto}>", "List-Id": settings.list_id}


def proof_header(signer: Signer, email: str, ref: str) -> dict[str, str]:
    """The header that proves a message to ``email`` is ours (``ref``: the issue id or the
    reply kind); see :meth:`crusader_mail.util.tokens.Signer.mail_id`."""
    return {MAIL_ID_HEADER: signer.mail_id(email, ref)}


def list_headers(settings: Settings, signer: Signer, email: str, now: datetime) -> dict[str, str]:
    """The list headers of one reader's mail (see :func:`headers_for`)."""
    return headers_for(settings, links_for(settings, signer.make(Purpose.UNSUBSCRIBE, email, now)))


def clean_name(name: str) -> str:
    """A display name safe in headers and HTML: no control characters, no markup, bounded."""
    if (  # most names are left as they are: printable (so no space but " "), at most 100
        # characters, no < > " \\, words separated by one space, none before or after
        len(name) <= 100
        and name.isprintable()
        and "  " not in name
        and name[:1] != " "
        and name[-1:] != " "
        and "<" not in name
        and ">" not in name
        and '"' not in name
        and "\\" not in name
    ):
        return name
    kept = "".join(ch for ch in name if ch.isprintable() and ch not in '<>"\\')
    return " ".join(kept.split())[:100]


def placeholder_values(email: str, name: str, links: Links) -> dict[Placeholder, str]:
    """The values of the placeholders for one reader, given their links (the preferences URL
    only when they have one)."""
    values = {
        Placeholder.UNSUBSCRIBE_URL: links.visible,
        Placeholder.EMAIL: email,
        Placeholder.NAME: clean_name(name),
    }
    if links.preferences:
        values[Placeholder.PREFERENCES_URL] = links.preferences
    return values


def personal_values(
    settings: Settings, signer: Signer, subscriber: Subscriber, now: datetime
) -> dict[Placeholder, str]:
    """The values of the placeholders for one reader on the list."""
    links = reader_links(settings, signer, subscriber.email, now)
    return placeholder_values(subscriber.email, subscriber.name, links)
