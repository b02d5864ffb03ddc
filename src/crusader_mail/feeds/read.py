"""The read stage: a feed, every feed, or every page of a feed -> posts and a report.

::

    read_feed(source, client, settings, cache, clock) -> FetchOutcome     # never raises
    read_feeds(sources, client, settings, caches, clock, on_read=None) -> list[FetchOutcome]
    backfill(source, client, settings, clock) -> FetchOutcome            # ?paged=N, RFC 5005

Each read fetches (:mod:`crusader_mail.feeds.fetch`, following a remembered permanent redirect
and sending the remembered validators) and parses (:mod:`crusader_mail.feeds.parse`). A blog's
web page given instead of its feed is read through the feed it links
(:mod:`crusader_mail.feeds.discover`): the report names that feed (``discovered``) and its first
warning says to put it in the settings. A feed
problem never raises: the outcome's report has ``status == "error"`` and one line. The report's
error and warnings show every URL masked (:func:`crusader_mail.util.masking.mask_urls`: no
password or ``?key=`` value); its ``url`` and ``permanent_redirect`` stay the real URLs, which
the archive remembers and the next fetch uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from crusader_mail.clock import Clock
from crusader_mail.errors import FeedError
from crusader_mail.feeds.discover import feed_links
from crusader_mail.feeds.fetch import Fetched, fetch, is_local
from crusader_mail.feeds.parse import is_web_page, parse_feed
from crusader_mail.models import FeedCache, FeedReport, Post
from crusader_mail.settings import FetchSettings
from crusader_mail.util.masking import mask_url, mask_urls
from crusader_mail.util.text import one_line


@dataclass(frozen=True)
class FetchOutcome:
    report: FeedReport  # .new is 0 here; the archive merge decides what is new
    posts: list[Post]
    cache: FeedCache | None  # the new cache to remember (None: keep the old one)


@dataclass
class _Page:
    outcome: FetchOutcome
    next_url: str | None = None


def _fetch_feed(
    source: str,
    url: str,
    client: httpx.Client,
    settings: FetchSettings,
    cache: FeedCache | None,
) -> tuple[Fetched, str | None]:
    """What ``url`` serves, and when that is a web page linking its feed, the feed instead
    (fetched the same way, the same addresses allowed): (what was read, the feed's URL when it
    was found on the page)."""
    fetched = fetch(source, url, client, settings, cache)
    if fetched.not_modified or not is_web_page(fetched.body, fetched.headers):
        return fetched, None
    links = feed_links(fetched.body, fetched.url or url)
    if not links:
        return fetched, None  # parsing says it is no feed (or reads a feed served as text/html)
    return fetch(source, links[0], client, settings, cache), links[0]


def _read_page(
    source: str,
    url: str,
    client: httpx.Client,
    settings: FetchSettings,
    cache: FeedCache | None,
    clock: Clock,
) -> _Page:
    try:
        fetched, discovered = _fetch_feed(source, url, client, settings, cache)
        if fetched.not_modified:
            report = _not_modified(source, fetched).model_copy(update={"discovered": discovered})
            return _Page(FetchOutcome(report, [], _cache_after_304(cache, fetched)))
        new_cache = (
            None
            if is_local(url)
            else FeedCache(
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                permanent_redirect=fetched.permanent_redirect,
            )
        )
        parsed = parse_feed(
            source, fetched.body, fetched.headers, fetched.url, clock.now(), settings.max_bytes
        )
    except FeedError as error:
        return _Page(FetchOutcome(_failed(source, error.reason), [], None))
    except Exception as error:  # a feed must never stop the run or show a traceback
        reason = f"unexpected {type(error).__name__} while reading: {error}"
        return _Page(FetchOutcome(_failed(source, reason), [], None))
    warnings = [mask_urls(warning) for warning in parsed.warnings]
    if discovered is not None:
        warnings.insert(0, discovered_note(source, discovered))
    report = FeedReport(
        url=source,
        status="ok",
        entries=len(parsed.posts),
        warnings=tuple(warnings),
        permanent_redirect=fetched.permanent_redirect,
        discovered=discovered,
    )
    return _Page(FetchOutcome(report, parsed.posts, new_cache), parsed.next_page)


def discovered_note(source: str, feed: str) -> str:
    """The line that tells the editor which URL to put in the settings."""
    return (
        f"{mask_url(source)} is a web page; read its feed {mask_url(feed)} instead: put that URL "
        "in feeds (the settings)"
    )


def _failed(source: str, reason: str) -> FeedReport:
    return FeedReport(url=source, status="error", error=one_line(mask_urls(reason), 300))


def _not_modified(source: str, fetched: Fetched) -> FeedReport:
    return FeedReport(
        url=source, status="not_modified", permanent_redirect=fetched.permanent_redirect
    )


def _cache_after_304(cache: FeedCache | None, fetched: Fetched) -> FeedCache | None:
    """A 304 keeps the validators; only a newly found permanent redirect changes the cache."""
    moved = fetched.permanent_redirect
    if not moved or (cache is not None and cache.permanent_redirect == moved):
        return None
    if cache is None:
        return FeedCache(permanent_redirect=moved)
    return replace(cache, permanent_redirect=moved)


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
    on_read: Callable[[FetchOutcome], None] | None = None,
) -> list[FetchOutcome]:
    """Read every feed (a few at a time); one failing feed never stops the others.
    ``on_read`` hears of each feed as it is done (in this thread, in the order they finish)."""
    done = on_read or (lambda _outcome: None)
    if len(sources) <= 1 or workers <= 1:
        outcomes = []
        for source in sources:
            outcomes.append(read_feed(source, client, settings, caches.get(source), clock))
            done(outcomes[-1])
        return outcomes
    with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        futures = [
            pool.submit(read_feed, s, client, settings, caches.get(s), clock) for s in sources
        ]
        for finished in as_completed(futures):
            done(finished.result())
        return [future.result() for future in futures]


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
    paged = first.next_url is None and not is_local(source)
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
                warnings.append(f"backfill stopped at {mask_urls(url)}: {report.error}")
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
