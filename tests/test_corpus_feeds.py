"""The reader over every real feed in ../shared/corpus (read in place, never copied).

No exception, no hang, one-line errors, nothing active in any output HTML, every URL absolute.
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from peers.feed_server import FeedServer

from crusader_mail.clock import FixedClock
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import FetchOutcome, read_feed
from tests.support.feeds import loopback_fetch

pytestmark = [pytest.mark.corpus, pytest.mark.timeout(120)]
SETTINGS = loopback_fetch(timeout=20, connect_timeout=5)
TAG = re.compile(r"<(/?)([a-zA-Z0-9]+)([^>]*)>")
ATTR_NAME = re.compile(r'\s([^\s="]+)="')
BANNED = {"script", "iframe", "form", "object", "embed", "style", "svg", "meta", "input", "link"}
URL_ATTR = re.compile(r'\s(?:href|src)="([^"]*)"')


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client(SETTINGS) as http:
        yield http


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted([*(corpus / "feeds").iterdir(), *(corpus / "nasty").iterdir()])
    return [f for f in files if f.is_file() and f.name not in ("README.md", ".gitattributes")]


def check(outcome: FetchOutcome) -> None:
    report = outcome.report
    assert report.status in ("ok", "error")
    if report.status == "error":
        assert report.error
        assert "\n" not in report.error
        assert "Traceback" not in report.error
        assert outcome.posts == []
        return
    assert report.entries == len(outcome.posts)
    assert all("\n" not in warning for warning in report.warnings)
    for post in outcome.posts:
        assert post.title.strip()
        assert post.link.startswith(("http://", "https://")), post.link
        assert post.published.tzinfo is UTC
        assert post.updated.tzinfo is UTC
        if post.image is not None:
            assert post.image.url.startswith(("http://", "https://"))
        for html in (post.content_html, post.summary_html):
            for _, name, attrs in TAG.findall(html):
                assert name.lower() not in BANNED, name
                for attr in ATTR_NAME.findall(attrs):
                    assert not attr.lower().startswith("on"), attr
                    assert attr.lower() != "style", attr
            for url in URL_ATTR.findall(html):
                assert url.startswith(("http://", "https://", "mailto:")), url


def test_every_corpus_file_as_a_local_path(
    corpus: Path, client: httpx.Client, clock: FixedClock
) -> None:
    files = corpus_files(corpus)
    assert len(files) > 60
    statuses = {}
    for path in files:
        outcome = read_feed(str(path), client, SETTINGS, None, clock)
        check(outcome)
        statuses[path.name] = outcome.report.status
    # the real blog feeds are all usable; the HTML page and bare XML attacks are not feeds
    assert all(statuses[f.name] == "ok" for f in files if f.parent.name == "feeds")
    for name in ("rbren_rss-parser__unrecognized.rss", "tiran_defusedxml__xmlbomb.xml"):
        assert statuses[name] == "error"


def test_gzip_and_relative_corpus_files_over_http(
    corpus: Path, feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    nasty = corpus / "nasty"
    gz = nasty / "danmactough_node-feedparser__invalid-characters-gzipped.xml.gz"
    url = feed_server.add("/nshipster.xml", gz.read_bytes(), headers={"Content-Encoding": "gzip"})
    outcome = read_feed(url, client, SETTINGS, None, clock)
    check(outcome)
    assert outcome.report.status == "ok"
    assert outcome.report.entries > 0

    relative = nasty / "danmactough_node-feedparser__rss-with-relative-urls.xml"
    local = read_feed(str(relative), client, SETTINGS, None, clock)
    served = read_feed(
        feed_server.add("/rel.xml", relative.read_bytes()), client, SETTINGS, None, clock
    )
    check(served)
    assert served.report.entries > local.report.entries  # the fetch URL makes the links usable
    assert all(p.link.startswith(feed_server.url("/")) for p in served.posts)

    page = nasty / "rbren_rss-parser__unrecognized.rss"
    html = read_feed(
        feed_server.add("/page", page.read_bytes(), content_type="text/html"),
        client,
        SETTINGS,
        None,
        clock,
    )
    assert html.report.error.startswith("not a feed: got a web page that links no RSS or Atom feed")


def test_large_feed_over_http_in_bounded_memory(
    corpus: Path, feed_server: FeedServer, client: httpx.Client, clock: FixedClock
) -> None:
    big = corpus / "feeds" / "rbren_rss-parser__giantbomb-podcast.rss"
    url = feed_server.add("/big.rss", big.read_bytes(), gzip=True)
    tracemalloc.start()
    try:
        outcome = read_feed(url, client, SETTINGS, None, clock)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    check(outcome)
    assert outcome.report.entries == 730
    assert peak < 150 * 1024 * 1024


def test_xxe_corpus_file_never_reads_a_file(
    corpus: Path, client: httpx.Client, clock: FixedClock, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("CORPUS-XXE-MARKER")
    body = (corpus / "nasty" / "laminas_laminas-feed__xxe-atom10.xml").read_text()
    feed = tmp_path / "xxe.xml"
    feed.write_text(body.replace("XXE_URI", secret.as_uri()))
    outcome = read_feed(str(feed), client, SETTINGS, None, clock)
    assert "CORPUS-XXE-MARKER" not in repr(outcome)
