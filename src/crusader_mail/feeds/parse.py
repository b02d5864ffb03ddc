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

Media: audio and video enclosures and ``media:content`` (one per file, by URL; the kind from
the MIME type, else the medium, else the file's extension), with ``itunes:duration`` (or the
``duration`` attribute), the size in bytes, and a picture: the episode's ``itunes:image`` for
audio, a ``media:thumbnail`` (else the ``itunes:image``) for video; then the players and
YouTube/Vimeo embeds the sanitizer turned into links (a file the feed already gave counts
once, even with a query added: ``a.mp4?_=1``). Titles are the post's unless the embed names one.

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
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

import feedparser

from crusader_mail.errors import FeedError
from crusader_mail.feeds.defuse import defuse
from crusader_mail.feeds.sanitize import (
    HTTP_SCHEMES,
    Sanitized,
    absolute_url,
    content_images,
    is_http,
    is_tracker,
    on_domain,
    sanitize,
)
from crusader_mail.models import Image, Media, MediaKind, Post
from crusader_mail.util.html_text import html_to_text, inline_text
from crusader_mail.util.masking import without_credentials
from crusader_mail.util.text import EXCERPT_WORDS, excerpt, first_words, one_line

HTML_TYPES = {"text/html", "application/xhtml+xml"}
_EXCERPT_SOURCE_CHARS = 20_000  # enough HTML for 55 words nearly always; the rest is not read
MIN_LEAD_WIDTH = 300  # narrower pictures are icons, badges, avatars and thumbnails
MIN_LEAD_HEIGHT = 100  # lower ones are rules, buttons and strips
SHARED_LEAD_POSTS = 3  # a candidate of this many posts (and of most) is the feed's, not theirs
_AUDIO_EXTENSIONS = {"mp3", "m4a", "aac", "oga", "ogg", "opus", "wav", "flac"}
_VIDEO_EXTENSIONS = {"mp4", "m4v", "mov", "webm", "ogv", "mkv"}
_AVATAR_HOSTS = ("gravatar.com",)
_GOOGLE_IMAGE_HOSTS = ("blogspot.com", "googleusercontent.com", "ggpht.com")
_GOOGLE_SIZE = re.compile(r"^[swh]\d+(?:-[a-z]+\d*)*$")  # a path segment: s72-c, w640-h302
_GOOGLE_SIZE_SUFFIX = re.compile(r"=([swh]\d+(?:-[a-z]+\d*)*)$")  # at the end: =s72-c, =w400-h300
_GOOGLE_SIZE_PART = re.compile(r"(?:^|-)([swh])(\d+)")
_FILE_SIZE = re.compile(r"-(\d+)x(\d+)\.(?:jpe?g|png|gif|webp)$", re.IGNORECASE)  # -150x150.jpg
_YOUTUBE_STILL = re.compile(r"/vi/[^/]+/(?:default|[0-3]|mqdefault)\.jpg$")  # 120x90, 320x180
_QUERY_WIDTH = re.compile(r"(?:^|&)(?:w|width|resize)=(\d+)")  # ?w=150, ?resize=150,150


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


def _number(value: object) -> int | None:
    """A positive whole number from a feed attribute (``"640"``, ``"640px"``), else ``None``."""
    text = str(value or "").strip().lower().removesuffix("px")
    return int(text) if text.isdigit() and 0 < int(text) < 10**12 else None


def _seconds(value: object) -> int | None:
    """``itunes:duration`` (``"5547"``, ``"54:09"``, ``"01:54:09"``, ``"1:02:03.5"``) in seconds."""
    parts = str(value or "").strip().split(":")
    if not 1 <= len(parts) <= 3:
        return None
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        return None
    total = 0.0
    for number in numbers:
        if not 0 <= number < 10**7:
            return None
        total = total * 60 + number
    return round(total) or None


def _image(
    url: object, base: str | None, width: object = None, height: object = None
) -> Image | None:
    absolute = absolute_url(str(url or ""), base, HTTP_SCHEMES) if url else None
    if not absolute:
        return None
    return Image(url=absolute, width=_number(width), height=_number(height))


def _hinted_size(url: str) -> tuple[int | None, int | None]:
    """The width and height a picture's URL says it was scaled to at most (Blogger's
    ``/s72-c/`` and ``=w400-h300``, ``?w=150``, WordPress's ``-150x150.jpg``, YouTube's small
    stills)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None, None
    host = (parts.hostname or "").lower()
    width = height = None
    if any(on_domain(host, domain) for domain in _GOOGLE_IMAGE_HOSTS):
        segments = [t for t in parts.path.split("/")[:-1] if _GOOGLE_SIZE.match(t)]
        for token in (*segments, *_GOOGLE_SIZE_SUFFIX.findall(parts.path)):
            for letter, number in _GOOGLE_SIZE_PART.findall(token):
                if letter in "sw":
                    width = int(number)
                if letter in "sh":
                    height = int(number)
    if host in ("img.youtube.com", "i.ytimg.com") and (match := _YOUTUBE_STILL.search(parts.path)):
        width, height = (320, 180) if "mq" in match.group(0) else (120, 90)
    if match := _FILE_SIZE.search(parts.path):
        width, height = int(match.group(1)), int(match.group(2))
    if match := _QUERY_WIDTH.search(parts.query):
        width = int(match.group(1))
    return width, height


def is_small(image: Image) -> bool:
    """Known to be too small to lead a post (see the module doc)."""
    hinted_width, hinted_height = _hinted_size(image.url)
    widths = [w for w in (image.width, hinted_width) if w is not None]
    heights = [h for h in (image.height, hinted_height) if h is not None]
    return any(w < MIN_LEAD_WIDTH for w in widths) or any(h < MIN_LEAD_HEIGHT for h in heights)


def _is_avatar(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(on_domain(host, domain) for domain in _AVATAR_HOSTS)


def _lead_candidates(
    entry: Any, base: str | None, content_html: str, media: Iterable[Media]
) -> list[Image]:
    """The pictures that could lead the post, best first (see the module doc)."""
    found: list[Image | None] = []
    for item in entry.get("media_content") or []:
        kind = (item.get("type") or "").lower()
        if item.get("medium") == "image" or kind.startswith("image/"):
            found.append(_image(item.get("url"), base, item.get("width"), item.get("height")))
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and (link.get("type") or "").startswith("image/"):
            found.append(_image(link.get("href"), base))
    found.extend(content_images(content_html))
    for thumb in entry.get("media_thumbnail") or []:
        found.append(_image(thumb.get("url"), base, thumb.get("width"), thumb.get("height")))
    taken = {m.thumbnail.url for m in media if m.thumbnail is not None}
    candidates: list[Image] = []
    for image in found:
        if image is None or image.url in taken:
            continue
        taken.add(image.url)
        if is_tracker(image.url, image.width, image.height):
            continue
        if not _is_avatar(image.url) and not is_small(image):
            candidates.append(image)
    return candidates


def _media_kind(mime: str, medium: str, url: str) -> MediaKind | None:
    major = mime.split("/")[0]
    if major in ("audio", "video"):
        return "audio" if major == "audio" else "video"
    if medium in ("audio", "video"):
        return "audio" if medium == "audio" else "video"
    if mime and mime not in ("application/octet-stream", "binary/octet-stream"):
        return None
    extension = urlsplit(url).path.rsplit(".", 1)[-1].lower()
    if extension in _AUDIO_EXTENSIONS:
        return "audio"
    return "video" if extension in _VIDEO_EXTENSIONS else None


def _feed_media(entry: Any, base: str | None) -> list[Media]:
    """The audio and video files of an entry: enclosures and ``media:content``, one per URL."""
    files = [
        (link.get("href"), link.get("type"), "", link.get("length"), None)
        for link in entry.get("links") or []
        if link.get("rel") == "enclosure"
    ]
    files += [
        (
            m.get("url"),
            m.get("type"),
            m.get("medium"),
            m.get("filesize") or m.get("length"),
            m.get("duration"),
        )
        for m in entry.get("media_content") or []
    ]
    if not files:
        return []
    art = _image((entry.get("image") or {}).get("href"), base)  # the episode's itunes:image
    stills = [
        _image(t.get("url"), base, t.get("width"), t.get("height"))
        for t in entry.get("media_thumbnail") or []
    ]
    still = next((s for s in stills if s is not None and not is_small(s)), None)
    duration = _seconds(entry.get("itunes_duration"))
    found: dict[str, Media] = {}
    for raw_url, raw_type, medium, length, seconds in files:
        url = absolute_url(str(raw_url or ""), base, HTTP_SCHEMES) if raw_url else None
        mime = str(raw_type or "").split(";")[0].strip().lower()
        kind = _media_kind(mime, str(medium or "").lower(), url) if url else None
        if url is None or kind is None:
            continue
        known = found.get(url)
        found[url] = Media(
            kind=kind,
            url=url,
            duration=(known and known.duration) or _seconds(seconds) or duration,
            type=(known and known.type) or mime,
            length=(known and known.length) or _number(length),
            thumbnail=(still or art) if kind == "video" else art,
        )
    return list(found.values())


def _media(feed_media: list[Media], embedded: Iterable[Media], title: str) -> tuple[Media, ...]:
    """The feed's media, then the players' and embeds' not already among them (a player's
    ``a.mp4?_=1`` is the feed's ``a.mp4``), each titled (the post's title unless it has one)."""
    out = list(feed_media)
    known = {media.url for media in out}
    for media in embedded:
        if media.url not in known and media.url.split("?")[0] not in known:
            known.add(media.url)
            out.append(media)
    return tuple(m if m.title else m.model_copy(update={"title": title}) for m in out)


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
    media = _media(_feed_media(entry, base), (*content.media, *summary.media), title)
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
    return post, _lead_candidates(entry, base, content_html, media)


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
