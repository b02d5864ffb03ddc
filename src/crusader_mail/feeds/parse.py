"""Parsing a feed: its bytes and response headers -> posts. No I/O.

``parse_feed(source, body, headers, url, now, max_bytes) -> ParsedFeed`` raises
:class:`FeedError` (one line) when the bytes are no feed; ``is_web_page(body, headers)`` tells a
web page (whose feed :mod:`crusader_mail.feeds.discover` finds) from a feed. The XML is defused first
(:mod:`crusader_mail.feeds.defuse`), then read by feedparser with the response headers (charset;
``Content-Location`` is the base of relative URLs). feedparser's own sanitizer and URL resolver
are off: :mod:`crusader_mail.feeds.sanitize` does both once, with nh3.

One :class:`Post` per entry: the title (Atom plain text as is, else the text of its HTML; else
the first words of the content; else "Untitled"), the feed (its URL without user, password or
secret parameters), the link (absolute; else the feed's own link; else the entry is skipped),
the id (else the link, else a hash), dates (published, else updated, else now), the author (a
bare address is no byline), categories and tags (a term whose scheme says "tag" is a tag),
content and summary HTML (sanitized; Atom plain text becomes paragraphs), the excerpt, the
media and the lead image.

Media (audio, video, embeds) and the lead image's candidates come from :mod:`.media`.

The lead image is the post's own first real picture, tried in this order: ``media:content``
images, image enclosures, the content's images, ``media:thumbnail``. Skipped: trackers, avatars
(Gravatar), a media's own picture, and pictures known to be small: a declared width under
300 px or height under 100 px, or a size in the URL under those (Blogger's ``s72-c`` and
``w200-h150``, ``?w=150``, WordPress's ``-150x150.jpg``, YouTube's small stills). A picture
among the candidates of at least three posts and of more than half the feed's posts (a
signature, a logo) is no post's own and is skipped too.
An entry repeating an earlier id is dropped with a warning.
``next_page`` is the RFC 5005 ``next`` (or ``prev-archive``) link, for backfilling.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

import feedparser

from crusader_mail.errors import FeedError
from crusader_mail.feeds.defuse import defuse
from crusader_mail.feeds.media import feed_media, lead_candidates, post_media
from crusader_mail.feeds.sanitize import (
    HTTP_SCHEMES,
    Sanitized,
    absolute_url,
    is_http,
    sanitize,
)
from crusader_mail.models import Image, Post
from crusader_mail.util.html_text import html_to_text, inline_text
from crusader_mail.util.masking import without_credentials
from crusader_mail.util.text import EXCERPT_WORDS, excerpt, first_words, one_line

SHARED_LEAD_POSTS = 3  # a candidate of this many posts (and of most) is the feed's, not theirs
HTML_TYPES = {"text/html", "application/xhtml+xml"}
_EXCERPT_SOURCE_CHARS = 20_000  # enough HTML for 55 words nearly always; the rest is not read


@dataclass(frozen=True)
class ParsedFeed:
    posts: list[Post]
    warnings: list[str]
    next_page: str | None  # RFC 5005: the next page of a paged feed, or its previous archive


def parse_feed(
    source: str, body: bytes, headers: Mapping[str, str], url: str, now: datetime, max_bytes: int
) -> ParsedFeed:
    """The posts of the feed ``source`` (fetched from ``url``, "" for a local file; first seen
    ``now``) and the warnings about what was odd in it."""
    parsed, warnings = _parse(source, body, headers, max_bytes)
    posts = _posts(parsed, source, url, now, warnings)
    return ParsedFeed(posts, warnings, _archive_link(parsed, url))


def _parse(
    source: str, body: bytes, headers: Mapping[str, str], max_bytes: int
) -> tuple[Any, list[str]]:
    body, warning = defuse(source, body, max_bytes)
    warnings = [warning] if warning else []
    parsed = feedparser.parse(
        io.BytesIO(body),  # never the bytes themselves: feedparser would try them as a path
        response_headers=dict(headers),
        sanitize_html=False,  # sanitize.py does it once, with nh3
        resolve_relative_uris=False,  # ... and resolves every URL while it does
    )
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not parsed.get("version") and not parsed.entries:
        if is_web_page(body, headers):
            raise FeedError(
                source,
                'not a feed: got a web page that links no RSS or Atom feed (<link rel="alternate" '
                'type="application/rss+xml">); put the feed\'s own URL in feeds',
            )
        if not body.strip():
            raise FeedError(source, "not a feed: the document is empty")
        reason = f" ({_describe_bozo(problem)})" if problem is not None else ""
        raise FeedError(source, f"not a feed: no RSS or Atom found{reason}")
    if problem is not None:
        warnings.append(f"malformed feed, used anyway: {_describe_bozo(problem)}")
    return parsed, warnings


def is_web_page(body: bytes, headers: Mapping[str, str]) -> bool:
    """Served as HTML, or starting like an HTML page (a blog's page rather than its feed)."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    head = body[:2048].lower()
    return content_type in HTML_TYPES or any(
        mark in head for mark in (b"<html", b"<!doctype html", b"<head", b"<body")
    )


def _describe_bozo(problem: object) -> str:
    name = type(problem).__name__
    if "Encoding" in name:
        return f"wrong or missing character encoding: {one_line(problem)}"
    if "SAX" in name or "Parse" in name:
        return f"not well-formed XML: {one_line(problem)}"
    return one_line(f"{name}: {problem}")


def _datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in value[:6])
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _base_for(detail_base: str | None, default: str | None) -> str | None:
    if detail_base and is_http(detail_base):
        return detail_base
    if detail_base and default:
        joined = absolute_url(detail_base, default, HTTP_SCHEMES)
        if joined:
            return joined
    return default


def _pick_content(entry: Any) -> Any | None:
    contents = entry.get("content") or []
    for detail in contents:
        if detail.get("type", "text/html") in HTML_TYPES and detail.get("value"):
            return detail
    return next((detail for detail in contents if detail.get("value")), None)


def _as_html(detail: Any, base: str | None, ctx: _FeedContext) -> Sanitized:
    value = detail.get("value") or ""
    if not value.strip():
        return Sanitized("")
    if detail.get("type") == "text/plain" and ctx.atom:  # RSS text is HTML by custom
        paragraphs = [p.strip() for p in value.split("\n\n") if p.strip()]
        return Sanitized("".join(f"<p>{escape(p)}</p>" for p in paragraphs))
    key = f"{base}\x00{value}"
    if key not in ctx.html_cache:
        ctx.html_cache[key] = sanitize(value, base)
    return ctx.html_cache[key]


def _terms(entry: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    categories: dict[str, str] = {}
    tags: dict[str, str] = {}
    for tag in entry.get("tags") or []:
        term = inline_text(tag.get("term") or tag.get("label") or "")
        if not term:
            continue
        scheme = (tag.get("scheme") or "").lower()
        target = tags if "tag" in scheme else categories
        target.setdefault(term.casefold(), term)
    return tuple(categories.values()), tuple(tags.values())


def _author(entry: Any) -> str:
    detail = entry.get("author_detail") or {}
    name = inline_text(detail.get("name") or entry.get("author") or "")
    return "" if "@" in name and " " not in name else name  # a bare address is no byline


@dataclass
class _FeedContext:
    source: str
    default_base: str | None  # the URL the feed was fetched from, else the site's own link
    feed_link: str | None  # where an entry without a link of its own points
    now: datetime
    warnings: list[str]
    atom: bool  # Atom says which text is plain; in RSS every text may carry HTML
    unlinked: list[str] = field(default_factory=list)
    html_cache: dict[str, Sanitized] = field(default_factory=dict)


def _post(entry: Any, ctx: _FeedContext) -> tuple[Post, list[Image]] | None:
    """The post of an entry (no lead image yet) and the pictures that could lead it."""
    content_detail = _pick_content(entry)
    summary_detail = entry.get("summary_detail") or (
        {"value": entry.get("summary"), "type": "text/html"} if entry.get("summary") else None
    )
    detail_base = (content_detail or summary_detail or {}).get("base")
    base = _base_for(detail_base, ctx.default_base)
    content = _as_html(content_detail, base, ctx) if content_detail else Sanitized("")
    summary = Sanitized("")
    if summary_detail:
        summary_base = _base_for(summary_detail.get("base"), base)
        summary = _as_html(summary_detail, summary_base, ctx)
    content = content if content.html else summary
    content_html, summary_html = content.html, summary.html

    link = None
    for candidate in (
        entry.get("link"),
        entry.get("id") if entry.get("guidislink") else None,
        *(x.get("href") for x in entry.get("links") or [] if x.get("rel") == "alternate"),
    ):
        if candidate:
            link = absolute_url(candidate, base or ctx.feed_link, HTTP_SCHEMES)
            if link:
                break
    text = html_to_text(content_html[:_EXCERPT_SOURCE_CHARS])
    if len(text.split()) <= EXCERPT_WORDS and len(content_html) > _EXCERPT_SOURCE_CHARS:
        text = html_to_text(content_html)
    title_detail = entry.get("title_detail") or {}
    raw_title = entry.get("title") or ""
    if title_detail.get("type") == "text/plain" and ctx.atom:
        title = " ".join(raw_title.split())
    else:
        title = inline_text(raw_title)
    title = title or first_words(text) or "Untitled"

    post_id = " ".join(str(entry.get("id") or "").split())
    if not post_id:
        post_id = link or (
            "sha256:" + hashlib.sha256(f"{title}\n{content_html}".encode()).hexdigest()
        )
    if link is None:
        if not ctx.feed_link:
            ctx.unlinked.append(post_id)
            return None
        link = ctx.feed_link

    published = _datetime(entry.get("published_parsed") or entry.get("created_parsed"))
    updated = _datetime(dict.get(entry, "updated_parsed"))  # no published fallback/warning
    categories, tags = _terms(entry)
    media = post_media(feed_media(entry, base), (*content.media, *summary.media), title)
    post = Post(
        id=post_id,
        title=title,
        link=link,
        published=published or updated or ctx.now,
        updated=updated or published or ctx.now,
        author=_author(entry),
        categories=categories,
        tags=tags,
        summary_html=summary_html,
        content_html=content_html,
        excerpt=excerpt(text),
        media=media,
        feed=without_credentials(ctx.source),  # the archive is committed to git
        first_seen=ctx.now,
    )
    return post, lead_candidates(entry, base, content_html, media)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _posts(
    parsed: Any, source: str, doc_url: str, now: datetime, warnings: list[str]
) -> list[Post]:
    feed = parsed.feed
    doc_base = doc_url if is_http(doc_url) else None
    feed_link = None
    alternates = (x.get("href") for x in feed.get("links") or [] if x.get("rel") == "alternate")
    for candidate in (feed.get("link"), *alternates):
        if candidate:
            feed_link = absolute_url(candidate, doc_base, HTTP_SCHEMES)
            if feed_link:
                break
    # Relative URLs: xml:base, else the URL the feed was fetched from (feedparser applies both,
    # given Content-Location), else, for a local file, the site's own link.
    atom = str(parsed.get("version", "")).startswith("atom")
    ctx = _FeedContext(source, doc_base or feed_link, feed_link, now, warnings, atom)
    found: list[tuple[Post, list[Image]]] = []
    seen: set[str] = set()
    repeated = 0
    for entry in parsed.entries:
        made = _post(entry, ctx)
        if made is None:
            continue
        if made[0].id in seen:
            repeated += 1
            continue
        seen.add(made[0].id)
        found.append(made)
    posts = _with_lead_images(found)
    if ctx.unlinked:
        warnings.append(
            f"{_count(len(ctx.unlinked), 'entry', 'entries')} skipped: no absolute link "
            f"(first: {one_line(ctx.unlinked[0], 80)!r})"
        )
    if repeated:
        repeats = _count(repeated, "entry repeats", "entries repeat")
        warnings.append(f"{repeats} the id of an earlier entry (kept the first)")
    return posts


def _with_lead_images(found: list[tuple[Post, list[Image]]]) -> list[Post]:
    """Each post with its first candidate picture that the feed's posts do not share."""
    uses = Counter(url for _, images in found for url in {image.url for image in images})
    shared = {url for url, n in uses.items() if n >= SHARED_LEAD_POSTS and n * 2 > len(found)}
    posts = []
    for post, images in found:
        lead = next((image for image in images if image.url not in shared), None)
        posts.append(post.model_copy(update={"image": lead}) if lead else post)
    return posts


def _archive_link(parsed: Any, doc_url: str) -> str | None:
    """RFC 5005: the ``next`` page of a paged feed, or the ``prev-archive`` of an archived one."""
    base = doc_url if is_http(doc_url) else None
    links = parsed.feed.get("links") or []
    for rel in ("next", "prev-archive"):
        for link in links:
            if link.get("rel") == rel and link.get("href"):
                return absolute_url(link["href"], base, HTTP_SCHEMES)
    return None
