"""The reader's HTTP behaviour against a real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from peers.feed_server import FeedServer

from crusader_mail import USER_AGENT
from crusader_mail.clock import FixedClock
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import backfill, read_feed, read_feeds
from crusader_mail.models import FeedCache
from tests.support.feeds import loopback_fetch, page

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
ATOM = (FIXTURES / "atom.xml").read_bytes()
SETTINGS = loopback_fetch(timeout=10, connect_timeout=5)
LAST_MODIFIED = "Mon, 16 Nov 2026 08:00:00 GMT"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client(SETTINGS) as http:
        yield http


def test_user_agent_and_conditional_get(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    url = feed_server.add("/feed", ATOM, etag='"v1"', last_modified=LAST_MODIFIED)
    first = read_feed(url, client, SETTINGS, None, clock)
    assert first.report.status == "ok"
    assert first.cache == FeedCache(etag='"v1"', last_modified=LAST_MODIFIED)
    assert feed_server.requests[0].headers["user-agent"] == USER_AGENT
    assert "if-none-match" not in feed_server.requests[0].headers

    second = read_feed(url, client, SETTINGS, first.cache, clock)
    assert second.report.status == "not_modified"
    assert second.report.entries == 0
    assert second.posts == []
    assert second.cache is None  # keep the old one
    assert feed_server.requests[1].headers["if-none-match"] == '"v1"'
    assert feed_server.requests[1].headers["if-modified-since"] == LAST_MODIFIED
    assert feed_server.requests[1].status == 304

    feed_server.add("/feed", ATOM.replace(b"Second entry", b"Changed"), etag='"v2"')
    third = read_feed(url, client, SETTINGS, first.cache, clock)
    assert third.report.status == "ok"
    assert third.cache == FeedCache(etag='"v2"')
    assert feed_server.hits("/feed") == 3


def test_permanent_redirect_is_reported_and_used_next_time(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    new_url = feed_server.add("/new.xml", ATOM, etag='"n"')
    old_url = feed_server.redirect("/old.xml", "/new.xml", status=301)
    outcome = read_feed(old_url, client, SETTINGS, None, clock)
    assert outcome.report.status == "ok"
    assert outcome.report.url == old_url
    assert outcome.report.permanent_redirect == new_url
    assert outcome.cache == FeedCache(etag='"n"', permanent_redirect=new_url)
    again = read_feed(old_url, client, SETTINGS, outcome.cache, clock)
    assert again.report.status == "not_modified"
    assert feed_server.hits("/old.xml") == 1  # went straight to the new place


@pytest.mark.parametrize(("first", "second", "permanent"), [(308, 302, True), (302, 301, False)])
def test_only_a_permanent_start_of_the_chain_counts(
    feed_server: FeedServer,
    client: httpx.Client,
    clock: FixedClock,
    first: int,
    second: int,
    permanent: bool,
) -> None:
    feed_server.add("/final.xml", ATOM)
    feed_server.redirect("/mid.xml", "/final.xml", status=second)
    url = feed_server.redirect("/start.xml", feed_server.url("/mid.xml"), status=first)
    outcome = read_feed(url, client, SETTINGS, None, clock)
    assert outcome.report.status == "ok"
    expected = feed_server.url("/mid.xml") if permanent else None
    assert outcome.report.permanent_redirect == expected


def test_too_many_redirects(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    url = feed_server.redirect("/loop.xml", "/loop.xml", status=302)
    settings = loopback_fetch(max_redirects=3)
    outcome = read_feed(url, client, settings, None, clock)
    assert outcome.report.status == "error"
    assert outcome.report.error == "more than 3 redirects (fetch.max_redirects)"
    assert feed_server.hits("/loop.xml") == 4


def test_http_error_is_one_line(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = read_feed(feed_server.url("/missing.xml"), client, SETTINGS, None, clock)
    assert outcome.report.status == "error"
    assert outcome.report.error == f"HTTP 404 Not Found from {feed_server.url('/missing.xml')}"
    gone = feed_server.add("/gone.xml", b"", status=500)
    assert read_feed(gone, client, SETTINGS, None, clock).report.error.startswith("HTTP 500")


def test_slow_response_times_out(feed_server: FeedServer, clock: FixedClock) -> None:
    url = feed_server.add("/slow.xml", ATOM, delay=5.0)
    settings = loopback_fetch(timeout=0.3, connect_timeout=0.3)
    with make_client(settings) as client:
        outcome = read_feed(url, client, settings, None, clock)
    assert outcome.report.status == "error"
    assert outcome.report.error == "timed out after 0.3 s (fetch.timeout)"


def test_total_deadline_holds_while_the_body_drips(
    feed_server: FeedServer, clock: FixedClock
) -> None:
    # each chunk comes well within the read timeout, but the whole takes far longer than allowed
    url = feed_server.add("/drip.xml", ATOM * 20, drip=0.05)
    settings = loopback_fetch(timeout=0.4, connect_timeout=0.4)
    with make_client(settings) as client:
        outcome = read_feed(url, client, settings, None, clock)
    assert outcome.report.error == "timed out after 0.4 s (fetch.timeout)"


def test_size_cap_while_streaming(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    url = feed_server.add("/endless.xml", b"<rss>", endless=True)
    settings = loopback_fetch(max_bytes=200_000)
    outcome = read_feed(url, client, settings, None, clock)
    assert outcome.report.status == "error"
    assert outcome.report.error == "larger than the size limit of 200,000 bytes (fetch.max_bytes)"
    big = feed_server.add("/big.xml", ATOM + b" " * 300_000)
    assert read_feed(big, client, settings, None, clock).report.error == outcome.report.error


def test_gzip_is_decoded_and_the_cap_counts_decoded_bytes(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    url = feed_server.add("/gz.xml", ATOM, gzip=True)
    outcome = read_feed(url, client, SETTINGS, None, clock)
    assert outcome.report.status == "ok"
    assert outcome.report.entries == 2
    assert "gzip" in feed_server.requests[-1].headers["accept-encoding"]
    bomb = feed_server.add("/gzbomb.xml", ATOM + b" " * 5_000_000, gzip=True)
    small = loopback_fetch(max_bytes=1_000_000)
    assert read_feed(bomb, client, small, None, clock).report.error.startswith("larger than")


def test_connection_refused_is_one_line(client: httpx.Client, clock: FixedClock) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = read_feed(f"http://127.0.0.1:{port}/feed", client, SETTINGS, None, clock)
    assert outcome.report.status == "error"
    assert outcome.report.error.startswith("cannot connect:")
    assert "\n" not in outcome.report.error


def test_one_failing_feed_does_not_stop_the_others(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    good = feed_server.add("/good.xml", ATOM)
    html = feed_server.add(
        "/page.html", (FIXTURES / "html-page.html").read_bytes(), content_type="text/html"
    )
    missing = feed_server.url("/missing.xml")
    other = feed_server.add("/other.xml", (FIXTURES / "wordpress.xml").read_bytes())
    sources = [good, html, missing, other]
    outcomes = read_feeds(sources, client, SETTINGS, {}, clock)
    assert [o.report.status for o in outcomes] == ["ok", "error", "error", "ok"]
    assert [o.report.url for o in outcomes] == sources
    assert [o.report.entries for o in outcomes] == [2, 0, 0, 3]


def test_backfill_follows_rfc5005_links(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    url = feed_server.add("/paged.xml", page(1, "/paged-2.xml"))
    feed_server.add("/paged-2.xml", page(2, feed_server.url("/paged-3.xml")))
    feed_server.add("/paged-3.xml", page(3))
    outcome = backfill(url, client, SETTINGS, clock)
    assert outcome.report.status == "ok"
    assert outcome.report.entries == 9
    assert {p.feed for p in outcome.posts} == {url}
    assert "backfill read 3 page(s)" in outcome.report.warnings


def test_backfill_follows_wordpress_paged_until_404(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    base = feed_server.url("/wp/")
    feed_server.add("/wp/", page(1))
    feed_server.add("/wp/?paged=2", page(2))
    outcome = backfill(base, client, SETTINGS, clock)
    assert outcome.report.entries == 6
    assert feed_server.hits("/wp/?paged=3") == 1  # the 404 that ended it
    assert feed_server.hits("/wp/?paged=4") == 0


def test_backfill_stops_when_a_page_adds_nothing(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    url = feed_server.add("/static.xml", page(1))
    feed_server.add("/static.xml?paged=2", page(1))
    outcome = backfill(url, client, SETTINGS, clock)
    assert outcome.report.entries == 3


def test_clock_decides_first_seen(feed_server: FeedServer, client: httpx.Client) -> None:
    url = feed_server.add("/atom.xml", ATOM)
    at = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    outcome = read_feed(url, client, SETTINGS, None, FixedClock(at))
    assert {p.first_seen for p in outcome.posts} == {at}
