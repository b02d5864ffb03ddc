"""`crusader-mail preview`: the next issue exactly as `send` would send it; changes no state.

Contract: ``preview [--out DIR] [--open] [--serve [--port N]] [--posts N | --post URL]
[--as EMAIL] [--json]`` calls ``pipeline.plan_preview(settings, clock, posts=N, post_url=URL)``
and writes ``DIR/newsletter.html``, ``DIR/newsletter.txt`` and ``DIR/subject.txt`` (default
``settings.preview_dir``). ``--json`` prints
``{"subject", "html", "text", "html_bytes", "posts", "related"}`` (html/text: the files' paths).

``--serve`` serves DIR on 127.0.0.1 (:class:`PreviewServer`) and renders again whenever a file
under ``templates_dir`` or the config file changes (mtimes polled). Its start page wraps the
newsletter in an iframe and reloads it with a tiny script; the newsletter file itself never
carries a script. A template error while serving is shown on that page, and serving goes on.
"""

from __future__ import annotations

import functools
import html
import json
import threading
import webbrowser
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import click

from crusader_mail import pipeline
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import Clock
from crusader_mail.compose.composer import Composer
from crusader_mail.delivery.links import personal_values
from crusader_mail.errors import CrusaderMailError
from crusader_mail.models import Placeholder, Post, RenderedIssue
from crusader_mail.settings import Settings, load_settings
from crusader_mail.storage import open_store
from crusader_mail.util.masking import mask_email
from crusader_mail.util.tokens import Signer

FAKE_UNSUBSCRIBE_URL = "https://preview.invalid/unsubscribe?this-is-a-preview"


class PlanLike(Protocol):
    @property
    def issue(self) -> RenderedIssue: ...
    @property
    def posts(self) -> Sequence[Post]: ...
    @property
    def related(self) -> Sequence[Post]: ...


class Planner(Protocol):
    def __call__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        posts: int | None = None,
        post_url: str | None = None,
    ) -> PlanLike: ...


def load_planner() -> Planner:
    """``pipeline.plan_preview`` (a seam: tests replace this function)."""
    return pipeline.plan_preview


@dataclass(frozen=True)
class Written:
    issue: RenderedIssue
    html: Path
    text: Path
    subject: Path
    posts: tuple[str, ...]
    related: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.issue.subject,
            "html": str(self.html),
            "text": str(self.text),
            "html_bytes": self.issue.html_bytes,
            "posts": list(self.posts),
            "related": list(self.related),
        }


def reader_values(settings: Settings, clock: Clock, email: str) -> dict[Placeholder, str]:
    """Per-reader values for ``--as``: the sender's real ones for a reader on the list when a
    secret key is set; otherwise the address and a clearly fake unsubscribe URL."""
    found = open_store(settings, clock).roster.get(email)
    if found is not None and settings.secret_key is not None:
        signer = Signer(settings.require_secret_key())
        return dict(personal_values(settings, signer, found, clock.now()))
    return {
        Placeholder.EMAIL: found.email if found else email,
        Placeholder.NAME: found.name if found else "",
        Placeholder.UNSUBSCRIBE_URL: FAKE_UNSUBSCRIBE_URL,
    }


def write_preview(
    issue: RenderedIssue,
    posts: Sequence[Post],
    related: Sequence[Post],
    out: Path,
    values: dict[Placeholder, str] | None,
) -> Written:
    files = pipeline.write_newsletter(issue, out, values)
    return Written(
        issue=issue,
        html=files.html,
        text=files.text,
        subject=files.subject,
        posts=tuple(p.id for p in posts),
        related=tuple(p.id for p in related),
    )


class Previewer:
    """Plans once, then composes again on template changes (plans again on settings changes)."""

    def __init__(
        self,
        app: AppContext,
        planner: Planner,
        out: Path | None,
        posts: int | None,
        post_url: str | None,
        as_email: str | None,
    ) -> None:
        self.app = app
        self.planner = planner
        self.settings = app.settings
        self.config_file = app.loaded().config_file
        self.out = out or self.settings.preview_dir
        self.posts = posts
        self.post_url = post_url
        self.as_email = as_email
        self.plan: PlanLike | None = None

    def watched(self) -> list[Path]:
        folder = Path(self.settings.templates_dir)
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        return files + ([self.config_file] if self.config_file else [])

    def render(self, changed: Sequence[Path] = ()) -> Written:
        if self.config_file is not None and self.config_file in changed:
            self.settings = load_settings(self.config_file).settings
            self.plan = None
        clock = self.app.clock
        if self.plan is None:
            self.plan = self.planner(
                self.settings,
                clock,
                posts=self.posts,
                post_url=self.post_url,
            )
            issue = self.plan.issue
        else:
            issue = Composer(self.settings).compose(
                self.plan.posts, self.plan.related, self.plan.issue.issue_id, clock.now()
            )
        values = None
        if self.as_email:
            values = reader_values(self.settings, clock, self.as_email)
        return write_preview(issue, self.plan.posts, self.plan.related, self.out, values)


# --- serving --------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {title}</title>
<style>
body {{ margin: 0; font: 14px Helvetica, Arial, sans-serif; background: #d9dde3; }}
header {{ padding: 8px 16px; background: #1f2933; color: #fff; }}
header a {{ color: #9cc3ff; margin-right: 12px; }}
.error {{ padding: 12px 16px; background: #fde2e1; color: #8a1c14; white-space: pre-wrap; }}
iframe {{ display: block; margin: 16px auto; border: 0; background: #fff; height: 85vh; }}
</style></head><body>
<header><strong>Subject:</strong> {subject} &middot; {size} &middot;
<a href="?w=600">600 px</a><a href="?w=375">375 px</a><a href="newsletter.txt">text</a>
<span id="state">live: re-renders when a template or the settings change</span></header>
{error}
<iframe id="issue" src="newsletter.html?v={version}" title="newsletter"></iframe>
<script>
/* Live reload: only in this preview page, never in the newsletter. */
const w = new URLSearchParams(location.search).get("w") || "600";
document.getElementById("issue").style.width = (parseInt(w, 10) + 20) + "px";
let version = "{version}";
setInterval(async () => {{
  try {{
    const now = await (await fetch("__version", {{cache: "no-store"}})).text();
    if (now !== version) location.reload();
  }} catch (e) {{ document.getElementById("state").textContent = "preview server stopped"; }}
}}, 700);
</script></body></html>
"""


class PreviewServer:
    """Serves ``folder`` on 127.0.0.1 and calls ``render`` again when a watched file changes."""

    def __init__(
        self,
        folder: Path,
        render: Callable[[Sequence[Path]], Written],
        watched: Callable[[], list[Path]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval: float = 0.3,
    ) -> None:
        self.folder = folder
        self._render = render
        self._watched = watched
        self.interval = interval
        self.version = 0
        self.error: str | None = None
        self.written: Written | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Handler, self, directory=str(folder))
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def render_now(self, changed: Sequence[Path] = ()) -> None:
        try:
            written = self._render(changed)
        except CrusaderMailError as error:
            with self._lock:
                self.error = str(error)
                self.version += 1
            return
        with self._lock:
            self.written, self.error = written, None
            self.version += 1

    def page(self) -> str:
        with self._lock:
            written, error, version = self.written, self.error, self.version
        subject = written.issue.subject if written else "(not rendered)"
        size = f"{written.issue.html_bytes:,} bytes" if written else ""
        return _PAGE.format(
            title=html.escape(subject),
            subject=html.escape(subject),
            size=size,
            version=version,
            error=f'<div class="error">{html.escape(error)}</div>' if error else "",
        )

    def _snapshot(self) -> dict[Path, tuple[int, int]]:
        snap = {}
        for path in self._watched():
            try:
                stat = path.stat()
            except OSError:
                continue
            snap[path] = (stat.st_mtime_ns, stat.st_size)
        return snap

    def _watch(self) -> None:
        before = self._snapshot()
        while not self._stop.wait(self.interval):
            now = self._snapshot()
            if now != before:
                changed = sorted(
                    p for p in now.keys() | before.keys() if now.get(p) != before.get(p)
                )
                before = now
                self.render_now(changed)

    def start(self) -> None:
        for target in (self.httpd.serve_forever, self._watch):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self.httpd.server_close()

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    @contextmanager
    def running(self) -> Iterator[PreviewServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, server_state: PreviewServer, *args: Any, **kwargs: Any) -> None:
        self.state = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(self.state.page(), "text/html; charset=utf-8")
        elif path == "/__version":
            self._send(str(self.state.version), "text/plain; charset=utf-8")
        else:
            super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _send(self, body: str, content_type: str) -> None:
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the editor's terminal shows only what matters


# --- the command ----------------------------------------------------------------------------


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
    previewer = Previewer(app, load_planner(), out, posts, post_url, as_email)
    if not serve:
        written = previewer.render()
        _report(written, as_json, as_email)
        if open_browser:
            webbrowser.open(written.html.resolve().as_uri())
        return
    server = PreviewServer(previewer.out, previewer.render, previewer.watched, port=port)
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


def _report(written: Written, as_json: bool, as_email: str | None) -> None:
    issue = written.issue
    if as_json:
        click.echo(json.dumps(written.to_json(), ensure_ascii=False))
        return
    click.echo(f"Subject:   {issue.subject}")
    click.echo(f"Preheader: {issue.preheader}")
    click.echo(
        f"Posts: {len(written.posts)}, related: {len(written.related)}, HTML: {issue.html_bytes:,} bytes"
    )
    for note in issue.notes:
        click.echo(f"Note: {note}")
    if as_email:
        click.echo(f"Per-reader values filled in for {mask_email(as_email)}")
    click.echo(f"Wrote {written.html}, {written.text.name}, {written.subject.name}")
