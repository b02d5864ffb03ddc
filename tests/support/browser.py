"""A rendered issue in headless Chromium, as a reader's mail program would show it.

::

    find_chromium() -> str | None                 Debian's chromium (or another on PATH)
    with Browser(executable, profile) as browser:  one headless Chromium, DevTools on a pipe
        browser.open(html, width=375, dark=True) -> Page     the issue, loaded
        browser.visit(url, width=375) -> Page      a page of a loopback server (serve's own)
        page.inspect() -> dict     layout, every image's box, every visible text's colours
        page.link_names() -> list  the accessible name of every link (what a screen reader says)
        page.screenshot() -> bytes  the whole page as PNG
    NEEDS_CHROMIUM, launch(tmp_path_factory)     a browser test's pytestmark and browser
    example_issue() / feed_issue(path)           issues of the example feed or a real one

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3 in,
fd 4 out, messages ended by NUL), so no port is opened and no websocket library is needed.

Nothing leaves 127.0.0.1. The issue is served by a loopback HTTP server; every other request
the page makes is paused (the ``Fetch`` domain) and answered here: a picture gets a grey
placeholder of its declared size (its ``width`` and ``height`` in the issue) or, when the issue
declares none, a 1600x900 one (the widest case), anything else is refused. Chromium also starts
with ``--host-resolver-rules`` mapping every name but 127.0.0.1 to nothing, and each page
records the address of every response (``Page.remote_addresses``) for tests to check.
"""

from __future__ import annotations

import base64
import fcntl
import html as html_lib
import itertools
import json
import os
import re
import select
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.compose.composer import fill_placeholders
from crusader_mail.compose.planning import preview_plan
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.models import Placeholder, RenderedIssue
from crusader_mail.settings import FetchSettings
from crusader_mail.storage.archive import Archive
from tests.support.golden import REPO, golden_settings, served_settings

EXAMPLE_FEED = REPO / "examples" / "biz-crusader" / "feed.xml"
EXAMPLE_NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CALL_TIMEOUT = 30.0
UNKNOWN_SIZE = (1600, 900)
READER = {
    Placeholder.EMAIL: "jane@example.com",
    Placeholder.NAME: "Jane",
    Placeholder.UNSUBSCRIBE_URL: "https://bizcrusader.example/unsubscribe?t=SAMPLE",
    Placeholder.PREFERENCES_URL: "https://bizcrusader.example/preferences?t=SAMPLE",
}
_IMG = re.compile(r"<img\s[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r'\s(src|width|height)="([^"]*)"', re.IGNORECASE)

# --- issues ------------------------------------------------------------------------------------


def feed_issue(
    feed: Path, *, posts: int = 3, full_content: bool = False, now: datetime = EXAMPLE_NOW
) -> RenderedIssue:
    """The issue ``crusader-mail preview --posts N`` makes of ``feed`` (read in place) with the
    repository's templates and the example's newsletter settings, serve's pages there (the
    footer links the reader's preferences)."""
    clock = FixedClock(now)
    settings = served_settings(full_content=full_content)
    with make_client(FetchSettings()) as client:
        outcome = read_feed(str(feed), client, settings.fetch, None, clock)
    if outcome.report.error:
        raise RuntimeError(f"{feed}: {outcome.report.error}")
    archive = Archive()
    archive.merge(outcome.posts, clock.now())
    return preview_plan(archive, settings, clock, posts=posts).issue


def example_issue() -> RenderedIssue:
    """The bundled example: the Biz Crusader feed's three newest posts, as excerpts."""
    return feed_issue(EXAMPLE_FEED)


def reader_html(issue: RenderedIssue) -> str:
    """The issue's HTML as one reader gets it (the placeholders filled in)."""
    return fill_placeholders(issue.html, READER, html=True)


def declared_sizes(html: str) -> dict[str, tuple[int, int]]:
    """src -> (width, height) of each picture the issue declares both of."""
    sizes: dict[str, tuple[int, int]] = {}
    for tag in _IMG.findall(html):
        attributes = {name.lower(): value for name, value in _ATTRIBUTE.findall(tag)}
        width, height = attributes.get("width", ""), attributes.get("height", "")
        if "src" in attributes and width.isdigit() and height.isdigit():
            sizes[html_lib.unescape(attributes["src"])] = (int(width), int(height))
    return sizes


def placeholder_svg(width: int, height: int) -> bytes:
    """A grey picture with a cross, ``width`` x ``height``."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="{width}" height="{height}" '
        f'fill="#9aa5b1"/><path d="M0 0L{width} {height}M{width} 0L0 {height}" '
        'stroke="#7b8794" stroke-width="3"/></svg>'
    ).encode()


# --- the loopback page server ------------------------------------------------------------------


@contextmanager
def serve(pages: dict[str, bytes]) -> Iterator[str]:
    """Serve ``pages`` (path -> HTML) on 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            if body is None:  # e.g. /favicon.ico
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the tab closed before the answer was written: nothing to tell

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- Chromium ----------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _high(fd: int) -> int:
    """``fd`` moved to a number of at least 10 (so moving the pipes to 3 and 4 clobbers none)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium; ``open`` gives each issue a fresh tab."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.executable = executable
        self.profile = profile
        self._ids = itertools.count(1)
        self._buffer = b""
        self._handlers: dict[str, Page] = {}  # session id -> page (its paused requests)
        self.pid = 0

    def __enter__(self) -> Browser:
        to_read, to_chromium = (_high(fd) for fd in os.pipe())
        from_chromium, to_write = (_high(fd) for fd in os.pipe())
        args = [
            self.executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--hide-scrollbars",
            "--font-render-hinting=none",
            f"--user-data-dir={self.profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        actions = [
            (os.POSIX_SPAWN_DUP2, to_read, 3),
            (os.POSIX_SPAWN_DUP2, to_write, 4),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        self.pid = os.posix_spawn(
            self.executable, args, dict(os.environ), file_actions=actions, setpgroup=0
        )  # its own process group: its renderers go with it
        os.close(to_read)
        os.close(to_write)
        self._out, self._in = to_chromium, from_chromium
        try:
            self.call("Target.setDiscoverTargets", {"discover": False})
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with suppress(BrowserError):
            self.call("Browser.close", timeout=5)
        self._stop()

    def _stop(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self._out)
        os.close(self._in)

    # -- the protocol ---------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data) :]
        return number

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str = "",
        timeout: float = CALL_TIMEOUT,
    ) -> dict[str, Any]:
        number = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, method)
            if message.get("id") == number:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def wait_for(self, event: str, session: str, timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, event)
            if message.get("method") == event and message.get("sessionId") == session:
                params: dict[str, Any] = message.get("params", {})
                return params

    def _next(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        """The next message; events are handed to their page on the way."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer {waiting_for} in time")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe while {waiting_for}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        page = self._handlers.get(message.get("sessionId", ""))
        if page is not None and "method" in message:
            page.on_event(message["method"], message.get("params", {}))
        return message

    # -- pages ----------------------------------------------------------------------------------

    @contextmanager
    def open(
        self, html: str, *, width: int, dark: bool = False, height: int = 800
    ) -> Iterator[Page]:
        """``html`` served from 127.0.0.1 and loaded in a ``width`` px wide tab, in the light or
        dark colour scheme, every picture answered with a placeholder."""
        with (
            serve({"/issue.html": html.encode("utf-8")}) as base,
            self.visit(
                base + "/issue.html",
                width=width,
                dark=dark,
                height=height,
                sizes=declared_sizes(html),
            ) as page,
        ):
            yield page

    @contextmanager
    def visit(
        self,
        url: str,
        *,
        width: int,
        dark: bool = False,
        height: int = 800,
        sizes: dict[str, tuple[int, int]] | None = None,
    ) -> Iterator[Page]:
        """The page at ``url`` (on 127.0.0.1) loaded in a fresh ``width`` px wide tab, every
        remote picture answered with a placeholder (of its size in ``sizes``)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session, sizes or {}, width)
        self._handlers[session] = page
        try:
            for method, params in (
                ("Page.enable", {}),
                ("Network.enable", {}),
                ("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}),
                (
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                ),
                (
                    "Emulation.setEmulatedMedia",
                    {
                        "media": "screen",
                        "features": [
                            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}
                        ],
                    },
                ),
            ):
                self.call(method, params, session)
            self.call("Page.navigate", {"url": url}, session)
            self.wait_for("Page.loadEventFired", session)
            yield page
        finally:
            del self._handlers[session]
            self.call("Target.closeTarget", {"targetId": target})


@dataclass
class Page:
    """A loaded issue in a tab."""

    browser: Browser
    session: str
    sizes: dict[str, tuple[int, int]]
    width: int
    placeholders: list[str] = field(default_factory=list)  # remote pictures answered here
    refused: list[str] = field(default_factory=list)  # other remote requests, refused
    remote_addresses: list[str] = field(default_factory=list)  # of every response received

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Fetch.requestPaused":
            self._answer(params)
        elif method == "Network.responseReceived":
            address = params["response"].get("remoteIPAddress")
            if address:
                self.remote_addresses.append(address)

    def _answer(self, paused: dict[str, Any]) -> None:
        request_id = paused["requestId"]
        url = paused["request"]["url"]
        parts = urlsplit(url)
        if parts.hostname == "127.0.0.1":
            self.browser.send("Fetch.continueRequest", {"requestId": request_id}, self.session)
        elif paused.get("resourceType") == "Image" and parts.scheme in ("http", "https"):
            self.placeholders.append(url)
            width, height = self.sizes.get(url, UNKNOWN_SIZE)
            body = base64.b64encode(placeholder_svg(width, height)).decode()
            self.browser.send(
                "Fetch.fulfillRequest",
                {
                    "requestId": request_id,
                    "responseCode": 200,
                    "responseHeaders": [{"name": "Content-Type", "value": "image/svg+xml"}],
                    "body": body,
                },
                self.session,
            )
        else:
            self.refused.append(url)
            self.browser.send(
                "Fetch.failRequest",
                {"requestId": request_id, "errorReason": "BlockedByClient"},
                self.session,
            )

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def inspect(self) -> dict[str, Any]:
        """Layout, images and text colours (see ``INSPECT``)."""
        found: dict[str, Any] = self.evaluate(INSPECT)
        return found

    def link_names(self) -> list[str]:
        """The accessible name of every link, from Chromium's accessibility tree."""
        tree = self.browser.call("Accessibility.getFullAXTree", {}, self.session)
        names = []
        for node in tree["nodes"]:
            if node.get("role", {}).get("value") == "link" and not node.get("ignored"):
                names.append(str(node.get("name", {}).get("value", "")))
        return names

    def screenshot(self) -> bytes:
        """The whole page (as tall as its content) as PNG."""
        metrics = self.browser.call("Page.getLayoutMetrics", {}, self.session)
        height = int(metrics["cssContentSize"]["height"] + 0.5)
        self.browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            self.session,
        )
        shot = self.browser.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, self.session
        )
        return base64.b64decode(shot["data"])


# Run in the page: what the tests look at. Visible text is every element with its own
# non-blank text that has a box larger than 1 px (so not the hidden preheader nor the words for
# screen readers), with its colour and the first opaque background behind it.
INSPECT = r"""
(() => {
  const opaque = (color) => !/^rgba\(.*,\s*0\)$/.test(color) && color !== 'transparent';
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const color = getComputedStyle(e).backgroundColor;
      if (opaque(color)) return color;
    }
    return null;
  };
  const box = (r) => ({left: r.left, right: r.right, top: r.top, width: r.width, height: r.height});
  const container = document.querySelector('table.container');
  const images = [...document.images]
    .filter((img) => img.getClientRects().length > 0)
    .map((img) => ({src: img.currentSrc || img.src, alt: img.getAttribute('alt'),
                    natural: img.naturalWidth, ...box(img.getBoundingClientRect())}));
  const texts = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const element = node.parentElement;
    if (!node.textContent.trim() || seen.has(element)) continue;
    seen.add(element);
    const style = getComputedStyle(element);
    const rect = element.getBoundingClientRect();
    if (rect.width <= 1 || rect.height <= 1 || style.visibility !== 'visible'
        || parseFloat(style.opacity) === 0) continue;
    texts.push({tag: element.tagName.toLowerCase(), cls: element.className,
                text: node.textContent.trim().slice(0, 50), color: style.color,
                background: background(element)});
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    container: container ? box(container.getBoundingClientRect()) : null,
    container_background: container ? getComputedStyle(container).backgroundColor : null,
    images, texts,
    hidden: [...document.querySelectorAll('.visually-hidden')]
      .map((e) => ({text: e.textContent, ...box(e.getBoundingClientRect())})),
    h1: document.querySelectorAll('h1').length,
    lang: document.documentElement.lang, dir: document.documentElement.dir,
    darkQuery: matchMedia('(prefers-color-scheme: dark)').matches,
  };
})()
"""


# --- for the tests -----------------------------------------------------------------------------

CHROMIUM = find_chromium()
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"),
        reason="chromium is not installed (make services)",
    ),
]
"""A browser test's ``pytestmark``: skipped without chromium on a developer's machine (``make
services`` installs it); under CI a missing chromium is a failure."""


def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One chromium for a module's tests (its ``browser`` fixture)."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: run scripts/install-test-services.sh")
    with Browser(CHROMIUM, tmp_path_factory.mktemp("chromium")) as running:
        yield running


# --- the public archive ------------------------------------------------------------------------

ARCHIVE_URL = "https://bizcrusader.example/archive/"


def archive_pages() -> dict[str, str]:
    """The golden issue's archive page (with an editor's note) and an index listing it and an
    older issue, as ``archive build`` writes them."""
    from crusader_mail.compose.composer import Composer
    from crusader_mail.publish.atom import Entry
    from crusader_mail.publish.site import render_index
    from tests.support.golden import golden_posts

    settings = golden_settings()
    settings = settings.model_copy(
        update={"newsletter": settings.newsletter.model_copy(update={"archive_url": ARCHIVE_URL})}
    )
    posts, related = golden_posts()
    note = "**A word first.** This issue has [a link](https://bizcrusader.example/about).\n"
    page = Composer(settings).compose(
        posts, related, "2026-11-23-golden00", EXAMPLE_NOW, note=note, web=True
    )
    entries = [
        Entry(
            issue_id=issue_id,
            title=title,
            url=f"{ARCHIVE_URL}{issue_id}.html",
            created=EXAMPLE_NOW,
            sent=EXAMPLE_NOW,
            posts=tuple(post.title for post in posts),
        )
        for issue_id, title in (
            ("2026-11-23-golden00", page.subject),
            ("2026-11-16-0a1b2c3d", "A much longer subject line, to see it wrap on a phone " * 2),
        )
    ]
    return {"issue": page.html, "index": render_index(entries, settings)}
