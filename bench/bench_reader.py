"""Benchmark the feed reader (stdlib only: time.perf_counter, statistics, tracemalloc).

    .venv/bin/python bench/bench_reader.py [--items 1000] [--runs 7]

1. A generated 1,000-item WordPress-style RSS feed (content:encoded with paragraphs, links,
   relative URLs, images, categories): ``read_feed`` (local file: read, defuse, parse, sanitize,
   build posts) against bare ``feedparser.parse`` of the same bytes (feedparser's defaults:
   its own sanitizer and URL resolver on). Median of N runs. Target: at most 20% slower.
2. The 304 path: a conditional GET answered 304 by a loopback HTTP server (the tests' feed
   server). Median of N runs. Target: under 50 ms.
3. Peak traced memory of one ``read_feed`` of the big feed.

Ends with the figures, each beside its target (``bench/report.py``).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for peers.feed_server and bench.report

from peers.feed_server import FeedServer  # noqa: E402

from bench.report import against, measured, print_figures  # noqa: E402
from crusader_mail.clock import FixedClock  # noqa: E402
from crusader_mail.feeds.fetch import make_client  # noqa: E402
from crusader_mail.feeds.read import read_feed  # noqa: E402
from crusader_mail.settings import FetchSettings  # noqa: E402

PARAGRAPH = (
    "Small businesses win clients by calling back, by saying what happens next, and by "
    'keeping promises about price and time. <a href="/guides/{n}/">Read the guide</a> or '
    "see <em>how</em> a <strong>follow-up</strong> routine works &#8212; it&#8217;s simple."
)


def generate_feed(items: int) -> bytes:
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n<title>Bench</title>\n'
        "<link>https://bench.example/</link>\n<description>generated</description>\n"
    ]
    for n in range(items):
        date = (start - timedelta(hours=n)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        body = "".join(f"<p>{PARAGRAPH.format(n=n)}</p>\n" for _ in range(6))
        body += (
            f'<figure><img src="/img/{n}.jpg" alt="Image {n}" width="640" height="360"></figure>'
        )
        parts.append(
            f"<item>\n<title>Post number {n}: follow up with clients</title>\n"
            f"<link>https://bench.example/{n}/</link>\n<dc:creator><![CDATA[Author {n % 7}]]></dc:creator>\n"
            f"<pubDate>{date}</pubDate>\n<category><![CDATA[Sales]]></category>\n"
            f"<category><![CDATA[Topic {n % 13}]]></category>\n"
            f'<guid isPermaLink="false">https://bench.example/?p={n}</guid>\n'
            f"<description><![CDATA[{PARAGRAPH.format(n=n)} [&#8230;]]]></description>\n"
            f"<content:encoded><![CDATA[{body}]]></content:encoded>\n</item>\n"
        )
    parts.append("</channel>\n</rss>\n")
    return "".join(parts).encode("utf-8")


def median_seconds(work: Callable[[], object], runs: int) -> float:
    work()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --items 100 --runs 3",
    )
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    body = generate_feed(args.items)
    settings = FetchSettings(allow_hosts=("127.0.0.1",))  # the loopback feed server
    clock = FixedClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as folder, make_client(settings) as client:
        path = Path(folder) / "feed.xml"
        path.write_bytes(body)
        outcome = read_feed(str(path), client, settings, None, clock)
        if outcome.report.status != "ok" or outcome.report.entries != args.items:
            raise SystemExit(f"the generated feed did not read back: {outcome.report}")

        bare = median_seconds(lambda: feedparser.parse(io.BytesIO(body)), args.runs)
        ours = median_seconds(
            lambda: read_feed(str(path), client, settings, None, clock), args.runs
        )
        tracemalloc.start()
        read_feed(str(path), client, settings, None, clock)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        server = FeedServer().start()
        try:
            url = server.add(
                "/feed.xml", body, etag='"bench"', last_modified="Mon, 23 Nov 2026 08:00:00 GMT"
            )
            first = read_feed(url, client, settings, None, clock)
            cache = first.cache
            check = read_feed(url, client, settings, cache, clock)
            if cache is None or check.report.status != "not_modified":
                raise SystemExit(f"no 304 from the loopback server: {check.report}")
            not_modified = median_seconds(
                lambda: read_feed(url, client, settings, cache, clock), max(args.runs, 21)
            )
        finally:
            server.stop()

    ratio = ours / bare
    print(f"feed: {args.items:,} items, {len(body) / 1e6:.2f} MB; median of {args.runs} runs")
    items = f"{args.items:,} items"
    print_figures(
        f"bench_reader.py ({items}, median of {args.runs} runs)",
        [
            measured(f"bare feedparser.parse ({items}, defaults)", bare * 1000, "ms", digits=1),
            measured(f"read_feed ({items}: parse + nh3 + posts)", ours * 1000, "ms", digits=1),
            against("read_feed / bare feedparser.parse", ratio, "≤", 1.2, "x"),
            measured("read_feed peak traced memory", peak / 1e6, "MB", digits=1),
            against("304 path over loopback HTTP", not_modified * 1000, "<", 50, "ms"),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
