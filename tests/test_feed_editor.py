"""The editor's feeds, through the real ``fetch`` and ``run`` commands and the loopback feed
server: a blog's home page is read through the feed it links (and says which URL to put in the
settings), a feed broken on three runs in a row fails the run, and the table tells feeds on one
host apart at 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result
from peers.feed_server import FeedServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.storage.files.archive import FileArchiveStore
from tests.support.feeds import FEED_SERVER_TOML

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
HOME = (FIXTURES / "home-page.html").read_bytes()
WORDPRESS = (FIXTURES / "wordpress.xml").read_bytes()
NOT_A_FEED = (FIXTURES / "html-page.html").read_bytes()


def config(folder: Path, feeds: list[str], fetch: str = FEED_SERVER_TOML) -> Path:
    path = folder / "crusader-mail.toml"
    path.write_text(f'feeds = {json.dumps(feeds)}\nstate_dir = "state"\n' + fetch)
    return path


def command(path: Path, clock: FixedClock, *args: str, columns: int = 80) -> Result:
    app = AppContext(config=path, clock=clock)
    return CliRunner().invoke(cli, list(args), obj=app, env={"COLUMNS": str(columns)})


# --- a home page instead of the feed ------------------------------------------------------------


def test_a_home_page_is_read_through_the_feed_it_links(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    home = feed_server.add("/", HOME, content_type="text/html; charset=UTF-8")
    feed = feed_server.add("/feed/", WORDPRESS, etag='"wp-1"')
    feed_server.add("/comments/feed/", b"<rss version='2.0'><channel></channel></rss>")
    path = config(clean_env, [home])
    first = command(path, clock, "fetch", "--json")
    assert first.exit_code == 0, first.output
    [report] = json.loads(first.stdout)["feeds"]
    assert (report["url"], report["status"], report["entries"]) == (home, "ok", 3)
    assert report["discovered"] == feed  # the posts' feed, not the comments'
    said = (
        f"{home} is a web page; read its feed {feed} instead: put that URL in feeds (the settings)"
    )
    assert report["warnings"] == [said]
    assert first.stderr == f"crusader-mail: warning: {said}\n"  # with --json too, on stderr
    assert feed_server.hits("/comments/feed/") == 0

    again = command(path, clock, "fetch")  # the feed's validators are kept: a 304 now
    assert again.exit_code == 0, again.output
    assert "not_modified" in again.stdout
    assert "read from its feed" in " ".join(again.stdout.split())
    assert feed_server.requests[-1].path == "/feed/"
    assert feed_server.requests[-1].headers.get("if-none-match") == '"wp-1"'

    config(clean_env, [feed])  # as told: the feed's own URL, and nothing is new twice
    direct = command(path, clock, "fetch", "--json")
    assert direct.exit_code == 0, direct.output
    data = json.loads(direct.stdout)
    assert data["feeds"][0]["discovered"] is None
    assert data["new_posts"] == []
    assert data["backlog"]["posts"] == 0
    assert direct.stderr == ""


def test_a_page_that_links_no_feed_says_so(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    page = feed_server.add("/about/", NOT_A_FEED, content_type="text/html")
    result = command(config(clean_env, [page]), clock, "fetch", "--json")
    assert result.exit_code == 1  # its only feed failed
    [report] = json.loads(result.stdout)["feeds"]
    assert report["error"] == (
        'not a feed: got a web page that links no RSS or Atom feed (<link rel="alternate" '
        'type="application/rss+xml">); put the feed\'s own URL in feeds'
    )


def test_the_linked_feed_obeys_the_address_rules(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    """The page's host is allowed (by name); the feed it links sits at a private address that
    is not: refused before any connection, like a configured feed."""
    port = feed_server.url("/").split(":")[2].rstrip("/")
    page = f"http://localhost:{port}/"
    feed_server.add(
        "/",
        f'<html><head><link rel="alternate" type="application/atom+xml" '
        f'href="http://127.0.0.1:{port}/private.xml"></head></html>',
        content_type="text/html",
    )
    feed_server.add("/private.xml", WORDPRESS)
    path = config(clean_env, [page], '\n[fetch]\nallow_hosts = ["localhost"]\n')
    result = command(path, clock, "fetch", "--json")
    [report] = json.loads(result.stdout)["feeds"]
    assert report["status"] == "error"
    assert report["error"] == (
        "refused: 127.0.0.1 is a loopback address (a feed there needs fetch.allow_private or "
        "the host in fetch.allow_hosts)"
    )
    assert feed_server.hits("/") == 1
    assert feed_server.hits("/private.xml") == 0


# --- a feed that stays broken -------------------------------------------------------------------


def test_a_feed_failing_three_runs_in_a_row_fails_the_run(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    good = feed_server.add("/wp.xml", WORDPRESS)
    broken = feed_server.url("/moved.xml")
    path = config(clean_env, [good, broken])
    feeds_file = clean_env / "state" / "feeds.json"
    codes = []
    for _ in range(2):
        result = command(path, clock, "fetch", "--json")
        codes.append(result.exit_code)
        assert [f["failures"] for f in json.loads(result.stdout)["feeds"]] == [0, len(codes)]
    assert codes == [0, 0]  # one failing feed among several: reported, the run goes on
    stored = json.loads(feeds_file.read_text())["feeds"]
    assert stored[broken] == {
        "etag": None,
        "last_modified": None,
        "permanent_redirect": None,
        "failures": 2,
        "ever_read": False,
    }
    assert "failures" not in stored[good]

    summary = clean_env / "summary.md"
    third = command(path, clock, "run", "--dry-run", "--summary", str(summary))
    assert third.exit_code == 1
    line = (
        f"feed {broken} has failed on 3 runs in a row (last: HTTP 404 Not Found from {broken}): "
        "fix its URL in feeds, or remove it"
    )
    assert f"crusader-mail: error: {line}\n" in third.stderr
    assert "feeds: 1 of 2 read; 1 failed on 3+ runs in a row" in third.stdout
    written = summary.read_text(encoding="utf-8")
    assert "**A feed failed on 3 runs in a row: this run fails.**" in written
    assert "error (3 runs in a row): HTTP 404 Not Found" in written
    assert json.loads(feeds_file.read_text())["feeds"][broken]["failures"] == 2  # dry: not kept

    fetched = command(path, clock, "fetch")
    assert fetched.exit_code == 1
    assert f"crusader-mail: error: {line}\n" in fetched.stderr
    assert "Feeds" in fetched.stdout  # the table is still printed

    feed_server.add("/moved.xml", WORDPRESS.replace(b"bizcrusader.example", b"moved.example"))
    fixed = command(path, clock, "fetch", "--json")
    assert fixed.exit_code == 0, fixed.output
    data = json.loads(fixed.stdout)
    assert [f["failures"] for f in data["feeds"]] == [0, 0]
    assert data["new_posts"] == []  # never read before: its back catalogue is backlog
    assert data["backlog"]["feeds"] == {broken: 3}
    assert "failures" not in json.loads(feeds_file.read_text())["feeds"][broken]


def test_old_state_without_failure_counts_loads(clean_env: Path) -> None:
    state = clean_env / "state"
    state.mkdir()
    (state / "feeds.json").write_text(
        json.dumps(
            {
                "format": "crusader-mail/feeds",
                "version": 1,
                "feeds": {"https://blog.example/feed": {"etag": '"a"', "last_modified": None,
                                                        "permanent_redirect": None}},
            }
        )
    )  # fmt: skip
    [cache] = FileArchiveStore(state).load().feed_cache.values()
    assert (cache.etag, cache.failures, cache.ever_read) == ('"a"', 0, True)


# --- the table at 80 columns --------------------------------------------------------------------


def test_feeds_on_one_host_can_be_told_apart_at_80_columns(
    feed_server: FeedServer, clean_env: Path, clock: FixedClock
) -> None:
    one = feed_server.add("/reading/lists/quarterly/one/rss.xml", WORDPRESS)
    two = feed_server.add(
        "/reading/lists/quarterly/two/rss.xml?api_key=s3cret", WORDPRESS.replace(b"p=1", b"p=9")
    )
    result = command(config(clean_env, [one, two]), clock, "fetch")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    host = one.split("/")[2]
    rows = [line for line in lines if f"│ {host}/…" in line]  # the host, then the path's end
    assert len(rows) == 2
    assert "/one/rss.xml │" in rows[0]
    assert "/two/rss.xml?… │" in rows[1]  # the query masked, then left out
    assert "s3cret" not in result.output
