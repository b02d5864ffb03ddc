"""`crusader-mail fetch [--json] [--include-backlog N] [--backfill]`: read the feeds into the archive.

Prints a table of feeds (each URL masked and shortened to what tells it apart, status, entries,
new, error), a line for the posts archived as backlog (:class:`crusader_mail.pipeline.Backlog`),
and the new posts; with ``--json`` exactly one object on stdout::

    {"feeds": [{"url", "status", "entries", "new", "error", "warnings", "discovered",
                "failures"}],
     "backlog": {"first_run", "posts", "feeds": {url: posts}},
     "new_posts": [{"id", "title", "link", "published"}]}

Diagnostics go to stderr, with ``--json`` too: a line per failed feed, per feed warning (a web
page read through the feed it links says which URL to put in the settings), per feed broken
for three runs in a row, and the progress (:mod:`crusader_mail.cli.progress`). Exit 1 when every
feed failed or one failed on three runs in a row (``pipeline.FEED_FAILURES_LIMIT``), else 0.
"""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table
from rich.text import Text

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console as make_console
from crusader_mail.cli.output import feed_column_width, short_url, warn
from crusader_mail.cli.progress import fetch_progress
from crusader_mail.models import ArchivedPost, FeedReport
from crusader_mail.pipeline import broken_feed_line, broken_feeds, fetch_stage
from crusader_mail.util.masking import mask_url


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option(
    "--include-backlog",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Make the N newest backlog posts (published before their feed was first seen) new.",
)
@click.option(
    "--backfill",
    is_flag=True,
    help="Follow paged feeds (?paged=2, RFC 5005 links) to fill the archive with older posts.",
)
@click.pass_obj
def fetch(app: AppContext, as_json: bool, include_backlog: int, backfill: bool) -> None:
    """Fetch every feed and add its posts to the archive."""
    result = fetch_stage(
        app.settings,
        app.clock,
        include_backlog=include_backlog,
        backfill_archive=backfill,
        progress=fetch_progress(app.clock),
    )
    feed_diagnostics(result.reports)
    if as_json:
        shown = _as_json(result.reports, result.new_posts) | {"backlog": result.backlog.to_json()}
        click.echo(json.dumps(shown, ensure_ascii=False))
    else:
        _print_tables(result.reports, result.new_posts, result.backlog.notes())
    every_failed = result.reports and all(report.status == "error" for report in result.reports)
    if every_failed or broken_feeds(result.reports):
        sys.exit(1)


def feed_diagnostics(reports: list[FeedReport], *, errors: bool = True) -> None:
    """Each feed's error (unless ``errors`` is off) and warnings on stderr, URLs masked, then
    the feeds broken for ``pipeline.FEED_FAILURES_LIMIT`` runs in a row as errors."""
    for report in reports:
        url = mask_url(report.url)
        if report.status == "error" and errors:
            click.echo(f"crusader-mail: feed error: {url}: {report.error}", err=True)
        for warning in report.warnings:
            warn(warning if warning.startswith(url) else f"feed {url}: {warning}")
    for report in broken_feeds(reports):
        click.echo(f"crusader-mail: error: {broken_feed_line(report)}", err=True)


def _as_json(reports: list[FeedReport], new_posts: list[ArchivedPost]) -> dict[str, object]:
    return {
        "feeds": [
            {
                "url": r.url,
                "status": r.status,
                "entries": r.entries,
                "new": r.new,
                "error": r.error,
                "warnings": list(r.warnings),
                "discovered": r.discovered,
                "failures": r.failures,
            }
            for r in reports
        ],
        "new_posts": [
            {
                "id": post.id,
                "title": post.title,
                "link": post.link,
                "published": post.published.isoformat(),
            }
            for post in new_posts
        ],
    }


NOTE = "error / note"


def _notes(report: FeedReport) -> str:
    """The last cell of a feed's row: its error, how long it has failed, where it was read."""
    said = [report.error] if report.error else []
    if report.failures > 1:
        said.append(f"failed {report.failures} runs in a row")
    if report.discovered:
        said.append(f"read from its feed {mask_url(report.discovered)}")
    if report.permanent_redirect:
        said.append(f"moved permanently to {mask_url(report.permanent_redirect)}")
    return "; ".join(said)


def _print_tables(
    reports: list[FeedReport], new_posts: list[ArchivedPost], notes: list[str]
) -> None:
    console = make_console()
    said = {r.url: _notes(r) for r in reports}
    others = [
        max([len("status"), *(len(r.status) for r in reports)]),
        len("entries"),
        len("new"),
        max([len(NOTE), *(len(note) for note in said.values())]),
    ]
    width = feed_column_width(console.width, [r.url for r in reports], others)
    feeds = Table(title="Feeds", title_justify="left")
    feeds.add_column("feed", no_wrap=True, max_width=width)
    feeds.add_column("status")
    feeds.add_column("entries", justify="right")
    feeds.add_column("new", justify="right")
    feeds.add_column(NOTE, overflow="fold")
    style = {"ok": "green", "not_modified": "cyan", "error": "red"}
    for r in reports:
        shown = short_url(r.url, width)
        feeds.add_row(
            Text(shown),
            Text(r.status, style=style[r.status]),
            str(r.entries),
            str(r.new),
            Text(said[r.url].replace(mask_url(r.url), shown)),
        )
    console.print(feeds)
    for note in notes:
        console.print(note, style="yellow")
    if not new_posts:
        console.print("No new posts.")
        return
    posts = Table(title=f"New posts ({len(new_posts)})", title_justify="left")
    for name in ("published", "title", "link"):
        posts.add_column(name)
    for post in new_posts:
        posts.add_row(post.published.strftime("%Y-%m-%d %H:%M"), Text(post.title), Text(post.link))
    console.print(posts)
