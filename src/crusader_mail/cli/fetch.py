"""`crusader-mail fetch [--json] [--include-backlog N] [--backfill]`: read the feeds into the archive.

Prints a table of feeds (url, status, entries, new, error or warning), a line for the posts
archived as backlog (:class:`crusader_mail.pipeline.Backlog`), and the new posts; with
``--json`` exactly one object on stdout::

    {"feeds": [{"url", "status", "entries", "new", "error"}],
     "backlog": {"first_run", "posts", "feeds": {url: posts}},
     "new_posts": [{"id", "title", "link", "published"}]}

Each failed feed is also one line on stderr. Exit 1 when every feed failed, else 0.
"""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table
from rich.text import Text

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console as make_console
from crusader_mail.models import ArchivedPost, FeedReport
from crusader_mail.pipeline import fetch_stage


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
    )
    for report in result.reports:
        if report.status == "error":
            click.echo(f"crusader-mail: feed error: {report.url}: {report.error}", err=True)
    if as_json:
        shown = _as_json(result.reports, result.new_posts) | {"backlog": result.backlog.to_json()}
        click.echo(json.dumps(shown, ensure_ascii=False))
    else:
        _print_tables(result.reports, result.new_posts, result.backlog.notes())
    if result.reports and all(report.status == "error" for report in result.reports):
        sys.exit(1)


def _as_json(reports: list[FeedReport], new_posts: list[ArchivedPost]) -> dict[str, object]:
    return {
        "feeds": [
            {
                "url": r.url,
                "status": r.status,
                "entries": r.entries,
                "new": r.new,
                "error": r.error,
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


def _print_tables(
    reports: list[FeedReport], new_posts: list[ArchivedPost], notes: list[str]
) -> None:
    console = make_console()
    feeds = Table(title="Feeds", title_justify="left")
    for name in ("feed", "status", "entries", "new", "error / warning"):
        feeds.add_column(name, justify="right" if name in ("entries", "new") else "left")
    style = {"ok": "green", "not_modified": "cyan", "error": "red"}
    for r in reports:
        note = r.error or "; ".join(r.warnings)
        if r.permanent_redirect:
            note = f"moved permanently to {r.permanent_redirect}" + (f"; {note}" if note else "")
        feeds.add_row(
            Text(r.url),
            Text(r.status, style=style[r.status]),
            str(r.entries),
            str(r.new),
            Text(note),
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
