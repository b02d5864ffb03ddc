"""The feed reader: fetch a feed (HTTP or a local file), parse it, and make one ``Post`` per entry.

Contract (see contracts.md)::

    make_client(settings, transport=None) -> httpx.Client
    read_feed(source, client, settings, cache, clock) -> FetchOutcome     # never raises
    read_feeds(sources, client, settings, caches, clock) -> list[FetchOutcome]
    backfill(source, client, settings, clock) -> FetchOutcome            # ?paged=N, RFC 5005

Fetching: connect timeout, and a total deadline for the whole fetch (redirects included) checked
while the body streams; a size cap on the decoded bytes, checked while streaming; redirects
followed by hand (at most ``max_redirects``) so that a permanent one (301/308 from the start of
the chain) is reported and remembered; conditional GET with the remembered ETag/Last-Modified
(304 parses nothing). Parsing: feedparser over the bytes with the response headers (charset,
base URL). feedparser's own sanitizer and URL resolver are off: :mod:`crusader_mail.feeds.sanitize`
does both once, with nh3. A DOCTYPE that declares external, parameter or nested entities is
removed before parsing (no entity expansion, no file or network read).

A feed problem never raises: the outcome's report has ``status == "error"`` and one line.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import feedparser
import httpx

from crusader_mail import USER_AGENT
from crusader_mail.clock import Clock
from crusader_mail.errors import FeedError
from crusader_mail.feeds.sanitize import absolute_url, first_image, is_http, sanitize_html
from crusader_mail.models import FeedReport, Image, Post
from crusader_mail.settings import FetchSettings
from crusader_mail.util.html_text import html_to_text, inline_text
from crusader_mail.util.text import excerpt, first_words

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
HTML_TYPES = {"text/html", "application/xhtml+xml"}
HTTP_SCHEMES = {"http", "https"}
_EXCERPT_SOURCE_CHARS = 20_000  # enough HTML for 55 words nearly always; the rest is not read


@dataclass(frozen=True)
class FeedCache:
    """Per-feed HTTP memory, kept in the archive."""

    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = None


@dataclass(frozen=True)
class FetchOutcome:
    report: FeedReport  # .new is 0 here; the archive merge decides what is new
    posts: list[Post]
    cache: FeedCache | None  # the new cache to remember (None: keep the old one)


def make_client(
    settings: FetchSettings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An HTTP client for feeds: our User-Agent, timeouts from the settings, no auto-redirects."""
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
        follow_redirects=False,  # followed by hand: permanent redirects are reported
        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
    )


# --- fetching ---------------------------------------------------------------------------------


@dataclass
class _Fetched:
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    url: str = ""  # where the bytes came from (the final URL), "" for a local file
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = None


def _is_local(source: str) -> bool:
    return "://" not in source or source.lower().startswith("file://")


def _fetch(
    source: str, url: str, client: httpx.Client, settings: FetchSettings, cache: FeedCache | None
) -> _Fetched:
    if _is_local(url):
        return _read_local(source, url, settings)
    deadline = time.monotonic() + settings.timeout
    request_headers: dict[str, str] = {}
    if cache is not None and cache.etag:
        request_headers["If-None-Match"] = cache.etag
    if cache is not None and cache.last_modified:
        request_headers["If-Modified-Since"] = cache.last_modified
    permanent = cache.permanent_redirect if cache else None
    chain_permanent = True
    try:
        for _hop in range(settings.max_redirects + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FeedError(source, f"timed out after {settings.timeout:g} s (fetch.timeout)")
            timeout = httpx.Timeout(remaining, connect=min(settings.connect_timeout, remaining))
            with client.stream("GET", url, headers=request_headers, timeout=timeout) as response:
                status = response.status_code
                location = response.headers.get("location")
                if status in (301, 302, 303, 307, 308) and location:
                    target = absolute_url(location, str(response.url), HTTP_SCHEMES)
                    if target is None:
                        raise FeedError(source, f"HTTP {status} redirects to an unusable URL")
                    chain_permanent = chain_permanent and status in (301, 308)
                    if chain_permanent:
                        permanent = target
                    url = target
                    continue
                if status == 304:
                    return _Fetched(not_modified=True, url=url, permanent_redirect=permanent)
                if status >= 400 or status < 200:
                    reason = response.reason_phrase or "error"
                    raise FeedError(source, f"HTTP {status} {reason} from {url}")
                body = _read_capped(source, response, settings, deadline)
                headers = {k.lower(): v for k, v in response.headers.items()}
                headers.pop("content-encoding", None)  # httpx has decoded the body already
                headers["content-location"] = str(response.url)  # the base of relative URLs
                return _Fetched(
                    body=_maybe_gunzip(source, body, settings.max_bytes),
                    headers=headers,
                    url=str(response.url),
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                    permanent_redirect=permanent,
                )
        raise FeedError(
            source, f"more than {settings.max_redirects} redirects (fetch.max_redirects)"
        )
    except httpx.TimeoutException:
        raise FeedError(source, f"timed out after {settings.timeout:g} s (fetch.timeout)") from None
    except httpx.DecodingError as error:
        raise FeedError(source, f"the body could not be decoded: {_one_line(error)}") from None
    except httpx.ConnectError as error:
        raise FeedError(source, f"cannot connect: {_one_line(error)}") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        kind = type(error).__name__
        raise FeedError(source, f"HTTP request failed ({kind}): {_one_line(error)}") from None


def _read_capped(
    source: str, response: httpx.Response, settings: FetchSettings, deadline: float
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > settings.max_bytes:
            raise FeedError(source, _too_big(settings.max_bytes))
        if time.monotonic() > deadline:
            raise FeedError(source, f"timed out after {settings.timeout:g} s (fetch.timeout)")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(limit: int) -> str:
    return f"larger than the size limit of {limit:,} bytes (fetch.max_bytes)"


def _maybe_gunzip(source: str, body: bytes, limit: int) -> bytes:
    """gzip bytes without a Content-Encoding (a ``.gz`` file, a misconfigured server)."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise FeedError(source, f"looks gzip-compressed but does not inflate: {error}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise FeedError(source, _too_big(limit) + " once decompressed")
    return data


def _read_local(source: str, url: str, settings: FetchSettings) -> _Fetched:
    path = Path(unquote(urlsplit(url).path)) if url.lower().startswith("file://") else Path(url)
    try:
        with path.open("rb") as handle:
            body = handle.read(settings.max_bytes + 1)
    except FileNotFoundError:
        raise FeedError(source, "file not found") from None
    except IsADirectoryError:
        raise FeedError(source, "is a folder, not a feed file") from None
    except OSError as error:
        raise FeedError(source, f"cannot read: {error.strerror}") from None
    if len(body) > settings.max_bytes:
        raise FeedError(source, _too_big(settings.max_bytes))
    return _Fetched(body=_maybe_gunzip(source, body, settings.max_bytes))


# --- defusing the XML -------------------------------------------------------------------------

_ENTITY = re.compile(rb"<!ENTITY\s+(%\s*)?([^\s\"'>]+)\s*(\"[^\"]*\"|'[^']*'|SYSTEM|PUBLIC)?")
_CHAR_REF = re.compile(rb"&#(?:\d+|x[0-9a-fA-F]+);")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")


def _defuse(source: str, body: bytes, limit: int) -> tuple[bytes, str | None]:
    """Remove a DOCTYPE whose entities could expand hugely or read files/URLs (XXE).

    Literal entities (plain text, or one character reference) that cannot expand past the size
    limit are left for feedparser, which keeps exactly those. Returns the bytes and a warning.
    """
    head = body[:4]
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00")) or b"\x00" in head:
        text = body[:4096].decode("utf-16" if b"\x00\x00" not in head else "utf-32", "replace")
        if "<!ENTITY" in text:
            raise FeedError(source, "refused: its DOCTYPE declares entities (UTF-16/32 document)")
        return body, None
    root = _FIRST_ELEMENT.search(body)
    start = body.find(b"<!DOCTYPE", 0, root.start() if root else len(body))
    if start < 0:
        return body, None
    end = _doctype_end(body, start)
    doctype = body[start:end]
    unsafe = []
    for percent, name, value in _ENTITY.findall(doctype):
        if percent or value in (b"SYSTEM", b"PUBLIC") or not value:
            unsafe.append("an external or parameter entity")
        elif b"&" in _CHAR_REF.sub(b"", value[1:-1]) or b"%" in value:
            unsafe.append("a nested entity")
        elif body.count(b"&" + name + b";", end) * len(value) > limit:
            unsafe.append("an entity expanding past the size limit")
    if not unsafe:
        return body, None
    warning = (
        f"ignored the DOCTYPE: it declares {sorted(set(unsafe))[0]} "
        "(possible XXE or entity-expansion attack); nothing was expanded"
    )
    return body[:start] + body[end:], warning


def _doctype_end(body: bytes, start: int) -> int:
    depth = 0
    quote = 0
    for index in range(start + 9, len(body)):
        char = body[index]
        if quote:
            if char == quote:
                quote = 0
        elif char in (0x22, 0x27):  # " '
            quote = char
        elif char == 0x5B:  # [
            depth += 1
        elif char == 0x5D:  # ]
            depth = max(0, depth - 1)
        elif char == 0x3E and depth == 0:  # >
            return index + 1
    return len(body)


# --- parsing ----------------------------------------------------------------------------------


def _one_line(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse(source: str, fetched: _Fetched, max_bytes: int) -> tuple[Any, list[str]]:
    body, warning = _defuse(source, fetched.body, max_bytes)
    warnings = [warning] if warning else []
    parsed = feedparser.parse(
        io.BytesIO(body),  # never the bytes themselves: feedparser would try them as a path
        response_headers=fetched.headers,
        sanitize_html=False,  # sanitize.py does it once, with nh3
        resolve_relative_uris=False,  # ... and resolves every URL while it does
    )
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not parsed.get("version") and not parsed.entries:
        content_type = fetched.headers.get("content-type", "").split(";")[0].strip()
        if content_type in HTML_TYPES or _looks_like_html(body):
            raise FeedError(source, "not a feed: got an HTML page, not RSS or Atom")
        if not body.strip():
            raise FeedError(source, "not a feed: the document is empty")
        reason = f" ({_describe_bozo(problem)})" if problem is not None else ""
        raise FeedError(source, f"not a feed: no RSS or Atom found{reason}")
    if problem is not None:
        warnings.append(f"malformed feed, used anyway: {_describe_bozo(problem)}")
    return parsed, warnings


def _looks_like_html(body: bytes) -> bool:
    head = body[:2048].lower()
    return any(mark in head for mark in (b"<html", b"<!doctype html", b"<head", b"<body"))


def _describe_bozo(problem: object) -> str:
    name = type(problem).__name__
    if "Encoding" in name:
        return f"wrong or missing character encoding: {_one_line(problem)}"
    if "SAX" in name or "Parse" in name:
        return f"not well-formed XML: {_one_line(problem)}"
    return _one_line(f"{name}: {problem}")


# --- entries to posts -------------------------------------------------------------------------


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


def _as_html(detail: Any, base: str | None, ctx: _FeedContext) -> str:
    value = detail.get("value") or ""
    if not value.strip():
        return ""
    if detail.get("type") == "text/plain" and ctx.atom:  # RSS text is HTML by custom
        paragraphs = [p.strip() for p in value.split("\n\n") if p.strip()]
        return "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    key = f"{base}\x00{value}"
    if key not in ctx.html_cache:
        ctx.html_cache[key] = sanitize_html(value, base)
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


def _lead_image(entry: Any, base: str | None, content_html: str) -> Image | None:
    candidates: list[str] = []
    for media in entry.get("media_content") or []:
        kind = (media.get("type") or "").lower()
        if media.get("medium") == "image" or kind.startswith("image/"):
            candidates.append(media.get("url") or "")
    candidates.extend(thumb.get("url") or "" for thumb in entry.get("media_thumbnail") or [])
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and (link.get("type") or "").startswith("image/"):
            candidates.append(link.get("href") or "")
    for candidate in candidates:
        url = absolute_url(candidate, base, HTTP_SCHEMES) if candidate else None
        if url:
            return Image(url=url)
    return first_image(content_html)


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
    html_cache: dict[str, str] = field(default_factory=dict)


def _post(entry: Any, ctx: _FeedContext) -> Post | None:
    content_detail = _pick_content(entry)
    summary_detail = entry.get("summary_detail") or (
        {"value": entry.get("summary"), "type": "text/html"} if entry.get("summary") else None
    )
    detail_base = (content_detail or summary_detail or {}).get("base")
    base = _base_for(detail_base, ctx.default_base)
    content_html = _as_html(content_detail, base, ctx) if content_detail else ""
    summary_html = ""
    if summary_detail:
        summary_base = _base_for(summary_detail.get("base"), base)
        summary_html = _as_html(summary_detail, summary_base, ctx)
    content_html = content_html or summary_html

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
    if len(text.split()) <= 55 and len(content_html) > _EXCERPT_SOURCE_CHARS:
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
    return Post(
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
        image=_lead_image(entry, base, content_html),
        feed=ctx.source,
        first_seen=ctx.now,
    )


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
    posts: list[Post] = []
    seen: set[str] = set()
    repeated = 0
    for entry in parsed.entries:
        post = _post(entry, ctx)
        if post is None:
            continue
        if post.id in seen:
            repeated += 1
            continue
        seen.add(post.id)
        posts.append(post)
    if ctx.unlinked:
        warnings.append(
            f"{_count(len(ctx.unlinked), 'entry', 'entries')} skipped: no absolute link "
            f"(first: {_one_line(ctx.unlinked[0], 80)!r})"
        )
    if repeated:
        repeats = _count(repeated, "entry repeats", "entries repeat")
        warnings.append(f"{repeats} the id of an earlier entry (kept the first)")
    return posts


# --- the stage --------------------------------------------------------------------------------


@dataclass
class _Page:
    outcome: FetchOutcome
    next_url: str | None = None


def _read_page(
    source: str,
    url: str,
    client: httpx.Client,
    settings: FetchSettings,
    cache: FeedCache | None,
    clock: Clock,
) -> _Page:
    try:
        fetched = _fetch(source, url, client, settings, cache)
        if fetched.not_modified:
            return _Page(
                FetchOutcome(_not_modified(source, fetched), [], _cache_after_304(cache, fetched))
            )
        new_cache = (
            None
            if _is_local(url)
            else FeedCache(
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                permanent_redirect=fetched.permanent_redirect,
            )
        )
        parsed, warnings = _parse(source, fetched, settings.max_bytes)
        posts = _posts(parsed, source, fetched.url, clock.now(), warnings)
    except FeedError as error:
        report = FeedReport(url=source, status="error", error=_one_line(error.reason, 300))
        return _Page(FetchOutcome(report, [], None))
    except Exception as error:  # a feed must never stop the run or show a traceback
        reason = f"unexpected {type(error).__name__} while reading: {_one_line(error)}"
        return _Page(FetchOutcome(FeedReport(url=source, status="error", error=reason), [], None))
    report = FeedReport(
        url=source,
        status="ok",
        entries=len(posts),
        warnings=tuple(warnings),
        permanent_redirect=fetched.permanent_redirect,
    )
    return _Page(FetchOutcome(report, posts, new_cache), _archive_link(parsed, fetched.url))


def _not_modified(source: str, fetched: _Fetched) -> FeedReport:
    return FeedReport(
        url=source, status="not_modified", permanent_redirect=fetched.permanent_redirect
    )


def _cache_after_304(cache: FeedCache | None, fetched: _Fetched) -> FeedCache | None:
    """A 304 keeps the validators; only a newly found permanent redirect changes the cache."""
    moved = fetched.permanent_redirect
    if not moved or (cache is not None and cache.permanent_redirect == moved):
        return None
    if cache is None:
        return FeedCache(permanent_redirect=moved)
    return FeedCache(cache.etag, cache.last_modified, moved)


def read_feed(
    source: str,
    client: httpx.Client,
    settings: FetchSettings,
    cache: FeedCache | None,
    clock: Clock,
) -> FetchOutcome:
    """Fetch and parse one feed. Never raises for a feed problem (see the report's error)."""
    url = cache.permanent_redirect if cache is not None and cache.permanent_redirect else source
    return _read_page(source, url, client, settings, cache, clock).outcome


def read_feeds(
    sources: Sequence[str],
    client: httpx.Client,
    settings: FetchSettings,
    caches: Mapping[str, FeedCache],
    clock: Clock,
    *,
    workers: int = 4,
) -> list[FetchOutcome]:
    """Read every feed (a few at a time); one failing feed never stops the others."""
    if len(sources) <= 1 or workers <= 1:
        return [read_feed(s, client, settings, caches.get(s), clock) for s in sources]
    with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        futures = [
            pool.submit(read_feed, s, client, settings, caches.get(s), clock) for s in sources
        ]
        return [future.result() for future in futures]


def _archive_link(parsed: Any, doc_url: str) -> str | None:
    """RFC 5005: the ``next`` page of a paged feed, or the ``prev-archive`` of an archived one."""
    base = doc_url if is_http(doc_url) else None
    links = parsed.feed.get("links") or []
    for rel in ("next", "prev-archive"):
        for link in links:
            if link.get("rel") == rel and link.get("href"):
                return absolute_url(link["href"], base, HTTP_SCHEMES)
    return None


def _with_page(url: str, page: int) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "paged"]
    query.append(("paged", str(page)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def backfill(
    source: str, client: httpx.Client, settings: FetchSettings, clock: Clock
) -> FetchOutcome:
    """Read every page of a feed: RFC 5005 ``next``/``prev-archive`` links, else WordPress
    ``?paged=2, 3, ...``, until a page ends the chain, adds nothing or fails (at most
    ``fetch.backfill_max_pages`` pages)."""
    first = _read_page(source, source, client, settings, None, clock)
    if first.outcome.report.status == "error":
        return first.outcome
    posts = {post.id: post for post in first.outcome.posts}
    warnings = list(first.outcome.report.warnings)
    paged = first.next_url is None and not _is_local(source)
    next_url = first.next_url
    visited = {source}
    pages = 1
    while pages < settings.backfill_max_pages:
        url = next_url if not paged else _with_page(source, pages + 1)
        if url is None or url in visited:
            break
        visited.add(url)
        page = _read_page(source, url, client, settings, None, clock)
        report = page.outcome.report
        if report.status == "error":
            if not paged:  # a paged WordPress feed ends with a 404; a broken link is worth a word
                warnings.append(f"backfill stopped at {url}: {report.error}")
            break
        fresh = [post for post in page.outcome.posts if post.id not in posts]
        if not fresh:
            break
        posts.update((post.id, post) for post in fresh)
        warnings.extend(w for w in report.warnings if w not in warnings)
        pages += 1
        next_url = page.next_url
    report = first.outcome.report.model_copy(
        update={"entries": len(posts), "warnings": (*warnings, f"backfill read {pages} page(s)")}
    )
    return FetchOutcome(report, list(posts.values()), first.outcome.cache)
