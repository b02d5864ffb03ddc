"""The archive's Atom 1.0 feed of issues (``feed.xml``, RFC 4287).

::

    atom_feed(entries, settings, updated) -> bytes    UTF-8 XML, newest entry first

The feed and each entry carry what RFC 4287 requires (``id``, ``title``, ``updated``; the
feed's ``author``, its ``self`` link) and a link to the page. An entry's id is a tag URI
(RFC 4151) made of the blog's host, the day the issue was created and its issue id, so it stays
the same when the archive moves to another address. ElementTree writes the XML, so a title
with ``<`` or ``&`` is escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from crusader_mail.settings import Settings

ATOM = "http://www.w3.org/2005/Atom"
FEED_FILE = "feed.xml"


@dataclass(frozen=True)
class Entry:
    """One issue as the feed lists it."""

    issue_id: str
    title: str  # the subject readers got
    url: str  # its page
    created: datetime
    sent: datetime
    posts: tuple[str, ...]  # the title of each post it carried


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tag_uri(settings: Settings, entry: Entry) -> str:
    """``tag:bizcrusader.example,2026-11-23:issue/2026-11-23-1a2b3c4d``."""
    host = urlsplit(settings.newsletter.site_url).hostname or "localhost"
    return f"tag:{host},{entry.created.astimezone(UTC):%Y-%m-%d}:issue/{entry.issue_id}"


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def atom_feed(entries: Sequence[Entry], settings: Settings, updated: datetime) -> bytes:
    """The feed of ``entries`` (newest first); ``updated``: when the feed last changed (the
    newest issue's sending time, or now for an empty archive)."""
    news = settings.newsletter
    base = news.archive_url or ""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", base + FEED_FILE)
    _add(feed, "title", news.name, type="text")
    _add(feed, "subtitle", f"Every issue of {news.name}, as sent", type="text")
    _add(feed, "updated", rfc3339(updated))
    _add(feed, "link", rel="self", type="application/atom+xml", href=base + FEED_FILE)
    _add(feed, "link", rel="alternate", type="text/html", href=base)
    author = _add(feed, "author")
    _add(author, "name", news.from_name or news.name)
    _add(author, "uri", news.site_url)
    _add(feed, "generator", "crusader-mail")
    for entry in entries:
        item = _add(feed, "entry")
        _add(item, "id", tag_uri(settings, entry))
        _add(item, "title", entry.title, type="text")
        _add(item, "published", rfc3339(entry.sent))
        _add(item, "updated", rfc3339(entry.sent))
        _add(item, "link", rel="alternate", type="text/html", href=entry.url)
        summary = "In this issue: " + "; ".join(entry.posts)
        _add(item, "summary", summary, type="text")
    ET.indent(feed)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body + b"\n"
