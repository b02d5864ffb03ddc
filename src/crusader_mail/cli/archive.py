"""``crusader-mail archive build [--json]``: the public archive rebuilt from the issue history.

Calls :func:`crusader_mail.pipeline.archive_stage` (the store's run lock held) and prints what
it wrote: one page per sent issue, ``index.html`` and ``feed.xml`` in ``archive_dir``.
``--json`` prints ``{"folder", "pages", "issues", "removed"}``. Exit 2 without
``newsletter.archive_url``.
"""

from __future__ import annotations

import json

import click

from crusader_mail import pipeline
from crusader_mail.cli.context import AppContext
from crusader_mail.pipeline import count_of


@click.group()
def archive() -> None:
    """The public archive of sent issues (archive_dir, published at newsletter.archive_url)."""


@archive.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def build(app: AppContext, as_json: bool) -> None:
    """Rebuild archive_dir from the issue history: a page per sent issue, index.html and
    feed.xml (Atom). Each page is the issue composed again from its record, with no reader's
    address, name or link in it; pages of issues no longer in the history are removed."""
    done = pipeline.archive_stage(app.settings, app.clock)
    if as_json:
        click.echo(json.dumps(done.to_json()))
        return
    click.echo(
        f"archive: {count_of(len(done.pages), 'page')} written to {done.folder}, "
        f"with index.html and feed.xml ({count_of(done.issues, 'issue')})"
    )
    for name in done.removed:
        click.echo(f"removed {name}: its issue is no longer in the history")
