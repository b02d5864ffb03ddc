"""`crusader-mail fetch`: table, --json, backlog, exit codes; in-process and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from peers.feed_server import FeedServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from tests.support.feeds import FEED_SERVER_TOML

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
WORDPRESS = (FIXTURES / "wordpress.xml").read_bytes()
NEW_ITEM = b"""<item><title>A Brand New Post</title><link>https://bizcrusader.example/new/</link>
<guid isPermaLink="false">https://bizcrusader.example/?p=200</guid>
<pubDate>Mon, 23 Nov 2026 08:00:00 +0000</pubDate><description>Fresh.</description></item>"""


CLEAN: dict[str, object] = {"error": None, "warnings": [], "discovered": None, "failures": 0}


def config(folder: Path, feeds: list[str]) -> Path:
    path = folder / "crusader-mail.toml"
    path.write_text(f'feeds = {json.dumps(feeds)}\nstate_dir = "state"\n' + FEED_SERVER_TOML)
    return path


def run(path: Path, clock: FixedClock, *args: str) -> Result:
    app = AppContext(config=path, clock=clock)
    return CliRunner().invoke(cli, ["fetch", *args], obj=app)


def test_first_run_fills_the_backlog_then_new_posts_show(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    wp = feed_server.add("/wp.xml", WORDPRESS, etag='"1"')
    atom = feed_server.add("/atom.xml", (FIXTURES / "atom.xml").read_bytes())
    path = config(clean_env, [wp, atom])
    first = run(path, clock, "--json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data == {
        "feeds": [
            {"url": wp, "status": "ok", "entries": 3, "new": 0, **CLEAN},
            {"url": atom, "status": "ok", "entries": 2, "new": 0, **CLEAN},
        ],
        "new_posts": [],
        "backlog": {"first_run": True, "posts": 5, "feeds": {wp: 3, atom: 2}},
    }
    assert (clean_env / "state" / "archive.jsonl").is_file()

    unchanged = json.loads(run(path, clock, "--json").stdout)
    assert unchanged["feeds"][0]["status"] == "not_modified"

    feed_server.add("/wp.xml", WORDPRESS.replace(b"<item>", NEW_ITEM + b"<item>", 1), etag='"2"')
    second = json.loads(run(path, clock, "--json").stdout)
    assert second["feeds"][0] == {"url": wp, "status": "ok", "entries": 4, "new": 1, **CLEAN}
    assert second["new_posts"] == [
        {
            "id": "https://bizcrusader.example/?p=200",
            "title": "A Brand New Post",
            "link": "https://bizcrusader.example/new/",
            "published": "2026-11-23T08:00:00+00:00",
        }
    ]


def test_the_backlog_is_named_on_the_first_run_and_for_a_feed_added_later(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    hint = "`crusader-mail run --include-backlog N` sends the N newest"
    wp = feed_server.add("/wp.xml", WORDPRESS)
    first = run(config(clean_env, [wp]), clock)
    assert first.exit_code == 0, first.output
    said = " ".join(first.stdout.split())  # the console may wrap the line
    assert f"first run: 3 posts already in the feeds archived as backlog, not sent; {hint}" in said
    atom = feed_server.add("/atom.xml", (FIXTURES / "atom.xml").read_bytes())
    path = config(clean_env, [wp, atom])
    added = run(path, clock)
    said = " ".join(added.stdout.split())
    assert f"feed {atom}: 2 earlier posts archived as backlog; {hint}" in said
    assert "No new posts." in added.stdout
    again = json.loads(run(path, clock, "--json").stdout)
    assert again["backlog"] == {"first_run": False, "posts": 0, "feeds": {}}


def test_include_backlog(feed_server: FeedServer, clean_env: Path, clock: FixedClock) -> None:
    path = config(clean_env, [feed_server.add("/wp.xml", WORDPRESS)])
    result = run(path, clock, "--json", "--include-backlog", "2")
    titles = [post["title"] for post in json.loads(result.stdout)["new_posts"]]
    assert titles == [
        "Pricing Conversations Without Fear",
        "Why Your Best Clients Want You to Call Them Back",
    ]


def test_table_output(feed_server: FeedServer, clean_env: Path, clock: FixedClock) -> None:
    wp = feed_server.add("/wp.xml", WORDPRESS)
    missing = feed_server.url("/missing.xml")
    result = run(config(clean_env, [wp, missing]), clock, "--include-backlog", "1")
    assert result.exit_code == 0
    assert "Feeds" in result.stdout
    assert "not_modified" not in result.stdout
    assert "HTTP 404 Not Found" in result.stdout
    assert "New posts (1)" in result.stdout  # the released post
    assert result.stderr.strip().splitlines() == [
        f"crusader-mail: feed error: {missing}: HTTP 404 Not Found from {missing}"
    ]


def test_every_feed_failed_exits_1(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    page = feed_server.add(
        "/page.html", (FIXTURES / "html-page.html").read_bytes(), content_type="text/html"
    )
    missing = str(clean_env / "nope.xml")
    result = run(config(clean_env, [page, missing]), clock, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [f["error"] for f in data["feeds"]] == [
        'not a feed: got a web page that links no RSS or Atom feed (<link rel="alternate" '
        'type="application/rss+xml">); put the feed\'s own URL in feeds',
        "file not found",
    ]
    assert len(result.stderr.strip().splitlines()) == 2
    assert "Traceback" not in result.output


def test_backfill_flag(feed_server: FeedServer, clean_env: Path, clock: FixedClock) -> None:
    from tests.support.feeds import page

    base = feed_server.add("/wp/", page(1))
    feed_server.add("/wp/?paged=2", page(2))
    result = run(config(clean_env, [base]), clock, "--json", "--backfill")
    assert json.loads(result.stdout)["feeds"][0]["entries"] == 6


def test_real_subprocess(feed_server: FeedServer, clean_env: Path) -> None:
    wp = feed_server.add("/wp.xml", WORDPRESS)
    path = config(clean_env, [wp])
    exe = Path(sys.executable).parent / "crusader-mail"
    done = subprocess.run(
        [str(exe), "--config", str(path), "fetch", "--json", "--include-backlog", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["feeds"][0]["status"] == "ok"
    assert [p["id"] for p in data["new_posts"]] == ["https://bizcrusader.example/?p=101"]
    assert feed_server.requests[-1].headers["user-agent"].startswith("crusader-mail/")
