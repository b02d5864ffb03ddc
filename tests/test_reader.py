"""The reader over the project's own fixtures, fetched from the loopback server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from peers.feed_server import FeedServer

from crusader_mail.clock import FixedClock
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import FetchOutcome, read_feed
from tests.support.feeds import loopback_fetch

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
SETTINGS = loopback_fetch(timeout=10, connect_timeout=5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client(SETTINGS) as http:
        yield http


def serve(server: FeedServer, name: str, **options: object) -> str:
    return server.add("/" + name, (FIXTURES / name).read_bytes(), **options)


def fetch(
    server: FeedServer, client: httpx.Client, clock: FixedClock, name: str, **options: object
) -> FetchOutcome:
    return read_feed(serve(server, name, **options), client, SETTINGS, None, clock)


def by_id(outcome: FetchOutcome) -> dict[str, object]:
    return {post.id: post for post in outcome.posts}


def test_wordpress_rss(feed_server: FeedServer, client: httpx.Client, clock: FixedClock) -> None:
    outcome = fetch(feed_server, client, clock, "wordpress.xml")
    assert outcome.report.status == "ok"
    assert outcome.report.entries == 3
    assert outcome.report.warnings == ()
    first = outcome.posts[0]
    assert first.id == "https://bizcrusader.example/?p=101"
    assert first.title == "Why Your Best Clients Want You to Call Them Back"
    assert first.link == "https://bizcrusader.example/2026/11/call-them-back/"
    assert first.published == datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
    assert first.author == "Dana Whitfield"
    assert first.categories == ("Client Relationships", "Sales")  # "sales" deduplicated
    assert first.tags == ("follow-up", "phone calls")
    assert "That’s why" in first.content_html  # numeric entity decoded
    followup = feed_server.url("/2026/10/follow-up-emails/")  # relative to where the feed was
    assert f'href="{followup}"' in first.content_html
    assert first.image is not None
    assert first.image.url == "https://bizcrusader.example/wp-content/uploads/2026/11/phone.jpg"
    assert first.image.alt == "A desk phone"
    assert first.excerpt.endswith(" […]")
    assert len(first.excerpt[: -len(" […]")].split()) == 55
    assert first.feed == feed_server.url("/wordpress.xml")
    assert first.first_seen == clock.now()
    second, third = outcome.posts[1], outcome.posts[2]
    assert second.image is not None
    assert second.image.url == "https://cdn.bizcrusader.example/pricing.png"
    assert third.image is not None
    assert third.image.url.endswith("/referrals.jpg")
    assert third.content_html == third.summary_html == "Happy clients are glad to recommend you."


def test_atom(feed_server: FeedServer, client: httpx.Client, clock: FixedClock) -> None:
    outcome = fetch(feed_server, client, clock, "atom.xml", content_type="application/atom+xml")
    assert outcome.report.status == "ok"
    post = outcome.posts[0]
    assert post.title == "Closing gracefully & kindly"
    assert post.link == "https://atom.example/blog/posts/closing.html"
    assert post.published == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert post.updated == datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
    assert post.published.tzinfo is UTC
    assert post.author == "Ada Example"
    assert post.categories == ("Sales",)
    assert post.tags == ("closing",)
    assert 'href="https://atom.example/blog/posts/thanks.html"' in post.content_html
    assert post.image is not None
    assert post.image.url == "https://atom.example/blog/posts/img/thanks.png"


def test_rss10_and_rss092(feed_server: FeedServer, client: httpx.Client, clock: FixedClock) -> None:
    rdf = fetch(feed_server, client, clock, "rss10.rdf", content_type="application/rdf+xml")
    assert rdf.report.status == "ok"
    assert [p.title for p in rdf.posts] == ["RDF item one"]
    assert rdf.posts[0].published == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    assert rdf.posts[0].author == "Rita Dee"
    old = fetch(feed_server, client, clock, "rss092.xml", content_type="text/xml")
    assert old.report.status == "ok"
    assert old.posts[0].link == "http://old.example/item1"
    assert old.posts[0].content_html == "Only a description, <i>no date</i>."


def test_relative_urls_and_xml_base(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = fetch(feed_server, client, clock, "relative.xml")
    based, root = outcome.posts
    assert based.link == "https://rel.example/blog/2026/based.html"
    assert 'href="https://rel.example/blog/2026/notes.html"' in based.content_html
    assert 'href="https://rel.example/about/"' in based.content_html
    assert 'src="https://rel.example/blog/2026/pic.png"' in based.content_html
    # no xml:base: the URL the feed came from is the base (the loopback server here)
    assert root.link == feed_server.url("/posts/root.html")
    assert f'href="{feed_server.url("/docs/x.html")}"' in root.content_html
    assert 'src="http://cdn.rel.example/p.png"' in root.content_html  # the feed URL's scheme


def test_relative_urls_in_a_local_file_use_the_feed_link(
    client: httpx.Client, clock: FixedClock
) -> None:
    outcome = read_feed(str(FIXTURES / "relative.xml"), client, SETTINGS, None, clock)
    root = outcome.posts[1]
    assert root.link == "https://rel.example/posts/root.html"
    assert outcome.cache is None


def test_missing_dates_fall_back_to_now_and_titles_to_first_words(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = fetch(feed_server, client, clock, "nodates.xml")
    assert [p.published for p in outcome.posts] == [clock.now()] * 3
    assert all(p.updated == clock.now() for p in outcome.posts)
    assert outcome.posts[1].title == "An item without a title has its first…"
    hashed = outcome.posts[2]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", hashed.id)
    assert hashed.link == "https://nodates.example/"
    again = fetch(feed_server, client, clock, "nodates.xml")
    assert [p.id for p in again.posts] == [p.id for p in outcome.posts]  # stable ids


def test_duplicate_guids_kept_once_with_a_warning(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = fetch(feed_server, client, clock, "dupguids.xml")
    assert [p.title for p in outcome.posts] == ["First copy", "Other"]
    assert outcome.report.entries == 2
    assert "1 entry repeats the id of an earlier entry (kept the first)" in outcome.report.warnings


def test_wrong_declared_encoding_is_used_with_a_warning(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = fetch(
        feed_server, client, clock, "wrong-encoding.xml", content_type="application/rss+xml"
    )
    assert outcome.report.status == "ok"
    assert outcome.posts[0].title == "“Smart” café crème — naïve"
    assert outcome.posts[0].content_html == "Crème brûlée for €5."
    assert any("encoding" in w for w in outcome.report.warnings)


def test_charset_from_the_response_header_is_used(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    body = (FIXTURES / "wrong-encoding.xml").read_bytes().replace(b' encoding="utf-8"', b"")
    url = feed_server.add("/latin.xml", body, content_type="text/xml; charset=windows-1252")
    outcome = read_feed(url, client, SETTINGS, None, clock)
    assert outcome.posts[0].title == "“Smart” café crème — naïve"


def test_hostile_content_is_sanitized(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = fetch(feed_server, client, clock, "hostile.xml")
    post = outcome.posts[0]
    assert post.title == "Nice title bold"
    for html in (post.content_html, post.summary_html):
        lowered = html.lower().replace("127.0.0.1", "")
        for bad in ("<script", "javascript", "data:", "onerror", "onclick", "onmouseover", "<iframe",
                    "<form", "<object", "<embed", "<svg", "<meta", "style=", "<style", "evil.example"):  # fmt: skip
            assert bad not in lowered, bad
    assert 'href="https://hostile.example/ok" rel="noopener"' in post.content_html
    image = feed_server.url("/x.png")
    assert f'<img src="{image}" alt="x" width="100" height="50">' in post.content_html
    assert "pwned" not in post.excerpt
    assert "Hello reader." in post.excerpt


def test_entity_bomb_is_not_expanded(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = fetch(feed_server, client, clock, "bomb.xml")
    assert outcome.report.status == "ok"
    assert any("DOCTYPE" in w for w in outcome.report.warnings)
    post = outcome.posts[0]
    assert "lollol" not in post.title + post.content_html
    assert len(post.content_html) < 100


def test_external_entity_never_reads_the_file(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = (FIXTURES / "xxe.xml").read_text().replace("XXE_URI", secret.as_uri())
    url = feed_server.add("/xxe.xml", body)
    outcome = read_feed(url, client, SETTINGS, None, clock)
    dumped = "".join(p.model_dump_json() for p in outcome.posts) + str(outcome.report)
    assert "TOP-SECRET-MARKER" not in dumped
    assert outcome.report.status == "ok"
    assert any("external" in w for w in outcome.report.warnings)
    local = tmp_path / "xxe.xml"
    local.write_text(body)
    outcome = read_feed(str(local), client, SETTINGS, None, clock)
    assert "TOP-SECRET-MARKER" not in "".join(p.model_dump_json() for p in outcome.posts)


def test_safe_literal_entities_still_work(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    body = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY site "https://lit.example">\n]>\n'
        '<rss version="2.0"><channel><title>t</title><link>&site;/</link><item><title>Lit</title>'
        "<link>&site;/a</link></item></channel></rss>"
    )
    outcome = read_feed(feed_server.add("/lit.xml", body), client, SETTINGS, None, clock)
    assert [p.link for p in outcome.posts] == ["https://lit.example/a"]
    assert outcome.report.warnings == ()


def test_html_page_is_not_a_feed(
    feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    outcome = fetch(
        feed_server, client, clock, "html-page.html", content_type="text/html; charset=utf-8"
    )
    assert outcome.report.status == "error"
    assert outcome.report.error.startswith(
        "not a feed: got a web page that links no RSS or Atom feed"
    )
    assert outcome.posts == []


def test_local_missing_file_is_one_line_error(
    client: httpx.Client, clock: FixedClock, tmp_path: Path
) -> None:
    outcome = read_feed(str(tmp_path / "nope.xml"), client, SETTINGS, None, clock)
    assert outcome.report.status == "error"
    assert outcome.report.error == "file not found"
    folder = read_feed(str(tmp_path), client, SETTINGS, None, clock)
    assert folder.report.error == "is a folder, not a feed file"


def test_file_uri_and_local_gzip(client: httpx.Client, clock: FixedClock, tmp_path: Path) -> None:
    import gzip

    packed = tmp_path / "feed.xml.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "atom.xml").read_bytes()))
    outcome = read_feed(packed.as_uri(), client, SETTINGS, None, clock)
    assert outcome.report.status == "ok"
    assert outcome.report.entries == 2
