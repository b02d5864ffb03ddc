"""`crusader-mail preview`: the next issue exactly as `send` would send it; changes no state.

``preview [--out DIR] [--open] [--serve [--port N]] [--posts N | --post URL] [--as EMAIL]
[--json]`` plans with ``pipeline.plan_preview(settings, clock, posts=N, post_url=URL)``
and writes ``DIR/newsletter.html``, ``DIR/newsletter.txt`` and ``DIR/subject.txt`` (default
``settings.preview_dir``). ``--json`` prints ``{"subject", "html", "text", "html_bytes", "posts",
"related"}`` (html/text: the files' paths). ``--as EMAIL`` fills in that reader's values
(:func:`reader_values`); ``--open`` opens the result in the browser. ``--serve`` serves DIR on
127.0.0.1 and renders again whenever a template or the settings file changes
(:mod:`crusader_mail.web.preview`), saying so in the terminal (stderr) with the time, the new
subject and size, or the template error the page shows. Notes go to stderr, with --json too.
"""

from __future__ import annotations

import functools
import json
import webbrowser
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import click

from crusader_mail import pipeline
from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import warn
from crusader_mail.clock import Clock
from crusader_mail.delivery.links import personal_values
from crusader_mail.models import Placeholder
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.util.masking import mask_email
from crusader_mail.util.tokens import Signer
from crusader_mail.web.preview import Planner, Previewer, PreviewServer, Written

FAKE_UNSUBSCRIBE_URL = "https://preview.invalid/unsubscribe?this-is-a-preview"
FAKE_PREFERENCES_URL = "https://preview.invalid/preferences?this-is-a-preview"


def load_planner() -> Planner:
    """``pipeline.plan_preview`` (a seam: tests replace this function)."""
    return pipeline.plan_preview


def reader_values(settings: Settings, clock: Clock, email: str) -> dict[Placeholder, str]:
    """Per-reader values for ``--as``: the sender's real ones for a reader on the list when a
    secret key is set; otherwise the address and clearly fake unsubscribe and preferences URLs."""
    with closing(open_store(settings, clock)) as store:
        found = store.roster.get(email)
    if found is not None and settings.secret_key is not None:
        signer = Signer(settings.require_secret_key())
        return dict(personal_values(settings, signer, found, clock.now()))
    return {
        Placeholder.EMAIL: found.email if found else email,
        Placeholder.NAME: found.name if found else "",
        Placeholder.UNSUBSCRIBE_URL: FAKE_UNSUBSCRIBE_URL,
        Placeholder.PREFERENCES_URL: FAKE_PREFERENCES_URL,
    }


@click.command()
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to write to (default: preview_dir).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the newsletter in the browser.")
@click.option("--serve", is_flag=True, help="Serve it on 127.0.0.1 and re-render on edits.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8008,
    show_default=True,
    help="Port for --serve (0: any free port).",
)
@click.option("--posts", "posts", type=click.IntRange(min=1), help="Preview the newest N posts.")
@click.option("--post", "post_url", help="Preview the post with this link.")
@click.option(
    "--as", "as_email", metavar="EMAIL", help="Fill in the per-reader values for this reader."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def preview(
    app: AppContext,
    out: Path | None,
    open_browser: bool,
    serve: bool,
    port: int,
    posts: int | None,
    post_url: str | None,
    as_email: str | None,
    as_json: bool,
) -> None:
    """Render the next issue to files (and serve it live) without changing any state."""
    if posts is not None and post_url is not None:
        raise click.UsageError("--posts and --post cannot be used together")
    values = None
    if as_email:
        values = functools.partial(reader_values, clock=app.clock, email=as_email)
    previewer = Previewer(
        app.settings,
        app.clock,
        load_planner(),
        config_file=app.loaded().config_file,
        out=out,
        posts=posts,
        post_url=post_url,
        values=values,
    )
    if not serve:
        written = previewer.render()
        _report(written, as_json, as_email)
        if open_browser:
            webbrowser.open(written.html.resolve().as_uri())
        return
    server = PreviewServer(
        previewer.out,
        previewer.render,
        previewer.watched,
        app.settings.templates_dir,
        port=port,
        on_render=functools.partial(_rendered, app.clock),
    )
    server.render_now()
    if server.written is not None:
        _report(server.written, as_json, as_email)
    elif server.error:
        click.echo(f"crusader-mail: error: {server.error}", err=True)
    with server.running():
        click.echo(f"Serving the preview on {server.url} (Ctrl+C to stop)", err=as_json)
        if open_browser:
            webbrowser.open(server.url)
        try:
            server.wait()
        except KeyboardInterrupt:
            click.echo("Stopped.", err=True)


def _rendered(
    clock: Clock, written: Written | None, error: str | None, changed: Sequence[Path]
) -> None:
    """The terminal's line after an edit: rendered again (subject, size), or the error the
    page shows too."""
    at = clock.now().astimezone().strftime("%H:%M:%S")
    names = ", ".join(sorted({path.name for path in changed}))
    if written is None:
        click.echo(
            f"crusader-mail: {at} {names} changed; not rendered: {error} (the page shows it too; "
            "the last good render stays until it is fixed)",
            err=True,
        )
        return
    issue = written.issue
    click.echo(
        f"crusader-mail: {at} {names} changed; rendered again: {issue.subject!r}, "
        f"{issue.html_bytes:,} bytes",
        err=True,
    )
    for note in issue.notes:
        warn(note, "note")


def _report(written: Written, as_json: bool, as_email: str | None) -> None:
    issue = written.issue
    for note in issue.notes:
        warn(note, "note")
    if as_json:
        click.echo(json.dumps(written.to_json(), ensure_ascii=False))
        return
    click.echo(f"Subject:   {issue.subject}")
    click.echo(f"Preheader: {issue.preheader}")
    click.echo(
        f"Posts: {len(written.posts)}, related: {len(written.related)}, HTML: {issue.html_bytes:,} bytes"
    )
    if as_email:
        click.echo(f"Per-reader values filled in for {mask_email(as_email)}")
    click.echo(f"Wrote {written.html}, {written.text.name}, {written.subject.name}")
