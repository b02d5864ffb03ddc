"""The preview of the next issue: its files, and a live preview server on 127.0.0.1.

::

    write_preview(issue, posts, related, out, values) -> Written
    Previewer(settings, clock, planner, ...).render(changed=()) -> Written
    PreviewServer(folder, render, watched, templates_dir, port=8008, on_render=...).running()

:func:`write_preview` writes ``newsletter.html``, ``newsletter.txt`` and ``subject.txt``
(:func:`crusader_mail.pipeline.write_newsletter`). :class:`Previewer` plans the issue once (the
``planner`` is ``pipeline.plan_preview``) and composes it again when a template changes; a change
to the settings file reloads the settings and plans again.

:class:`PreviewServer` serves the folder (a threaded ``http.server``) and polls the watched files'
mtimes, rendering again when one changes, and tells ``on_render`` (the CLI says it in the
terminal). Its start page, ``templates_dir/web/preview.html``, wraps the newsletter in an iframe
and reloads it with a tiny script; the newsletter file itself never carries a script. A
:class:`CrusaderMailError` while rendering (a template mistake) is shown on that page and told to
``on_render``, and serving goes on.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import jinja2

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import Composer
from crusader_mail.errors import CrusaderMailError, TemplateError
from crusader_mail.models import Placeholder, Post, RenderedIssue
from crusader_mail.pipeline import write_newsletter
from crusader_mail.settings import Settings, load_settings

PAGE = "preview.html"  # in templates_dir/web


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


#: The per-reader values to fill in, given the settings of the moment.
Values = Callable[[Settings], Mapping[Placeholder, str]]


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


def write_preview(
    issue: RenderedIssue,
    posts: Sequence[Post],
    related: Sequence[Post],
    out: Path,
    values: Mapping[Placeholder, str] | None,
) -> Written:
    """The issue's files in ``out``, per-reader ``values`` filled in when given."""
    files = write_newsletter(issue, out, values)
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
        settings: Settings,
        clock: Clock,
        planner: Planner,
        *,
        config_file: Path | None = None,
        out: Path | None = None,
        posts: int | None = None,
        post_url: str | None = None,
        values: Values | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.planner = planner
        self.config_file = config_file
        self.out = out or settings.preview_dir
        self.posts = posts
        self.post_url = post_url
        self.values = values
        self.plan: PlanLike | None = None

    def watched(self) -> list[Path]:
        """Every file under ``templates_dir``, and the settings file."""
        folder = Path(self.settings.templates_dir)
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        return files + ([self.config_file] if self.config_file else [])

    def render(self, changed: Sequence[Path] = ()) -> Written:
        """Write the preview files again (``changed``: the watched files that changed)."""
        if self.config_file is not None and self.config_file in changed:
            self.settings = load_settings(self.config_file).settings
            self.plan = None
        if self.plan is None:
            self.plan = self.planner(
                self.settings,
                self.clock,
                posts=self.posts,
                post_url=self.post_url,
            )
            issue = self.plan.issue
        else:
            issue = Composer(self.settings).compose(
                self.plan.posts, self.plan.related, self.plan.issue.issue_id, self.clock.now()
            )
        values = self.values(self.settings) if self.values else None
        return write_preview(issue, self.plan.posts, self.plan.related, self.out, values)


Rendered = Callable[[Written | None, str | None, Sequence[Path]], None]
"""Hears of each render after an edit: what was written (or ``None``), the error (or ``None``)
and the files that changed."""


class PreviewServer:
    """Serves ``folder`` on 127.0.0.1 and calls ``render`` again when a watched file changes."""

    def __init__(
        self,
        folder: Path,
        render: Callable[[Sequence[Path]], Written],
        watched: Callable[[], list[Path]],
        templates_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval: float = 0.3,
        on_render: Rendered | None = None,
    ) -> None:
        self.folder = folder
        self._render = render
        self._watched = watched
        self._on_render = on_render
        self.interval = interval
        self.version = 0
        self.error: str | None = None
        self.written: Written | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pages = _page_environment(Path(templates_dir) / "web")
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
        """Render; a library error is kept for the page to show instead of the last render's.
        A render for ``changed`` files is told to ``on_render`` (the terminal's line)."""
        try:
            written = self._render(changed)
        except CrusaderMailError as error:
            with self._lock:
                self.error = str(error)
                self.version += 1
            if changed and self._on_render is not None:
                self._on_render(None, str(error), changed)
            return
        with self._lock:
            self.written, self.error = written, None
            self.version += 1
        if changed and self._on_render is not None:
            self._on_render(written, None, changed)

    def page(self) -> str:
        """The start page: the newsletter in an iframe, the subject, size and any error."""
        with self._lock:
            written, error, version = self.written, self.error, self.version
        return self._pages.get_template(PAGE).render(
            subject=written.issue.subject if written else "(not rendered)",
            size=f"{written.issue.html_bytes:,} bytes" if written else "",
            version=version,
            error=error,
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

    def _watch(self, before: dict[Path, tuple[int, int]]) -> None:
        while not self._stop.wait(self.interval):
            now = self._snapshot()
            if now != before:
                changed = sorted(
                    p for p in now.keys() | before.keys() if now.get(p) != before.get(p)
                )
                before = now
                self.render_now(changed)

    def start(self) -> None:
        """Serve and watch; an edit made once this returns is seen (the files' state is taken
        here, not when the watching thread gets to run)."""
        watch = functools.partial(self._watch, self._snapshot())
        for target in (self.httpd.serve_forever, watch):
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


def _page_environment(folder: Path) -> jinja2.Environment:
    """The start page's templates (autoescaped); a missing or broken page is a TemplateError."""
    pages = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    try:
        pages.get_template(PAGE)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"{folder / PAGE}: the preview page template is missing") from None
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"{folder / PAGE}:{error.lineno}: {error.message}") from None
    return pages


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, server_state: PreviewServer, *args: Any, **kwargs: Any) -> None:
        self.state = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            try:
                page = self.state.page()
            except jinja2.TemplateError as error:  # preview.html edited into a mistake
                self._send(f"{PAGE}: {error}", "text/plain; charset=utf-8", status=500)
                return
            self._send(page, "text/html; charset=utf-8")
        elif path == "/__version":
            self._send(str(self.state.version), "text/plain; charset=utf-8")
        else:
            super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _send(self, body: str, content_type: str, status: int = 200) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the editor's terminal shows only what matters
