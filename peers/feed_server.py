"""A real HTTP server on 127.0.0.1 for feed tests (the ``feed_server`` fixture).

Small API::

    feed_server.add("/feed.xml", body, content_type=..., etag="v1", last_modified="...",
                    gzip=False, headers={}, status=200, delay=0.0, drip=0.0, endless=False,
                    trickle=0.0)
    feed_server.redirect("/old.xml", "/feed.xml", status=301)
    feed_server.url("/feed.xml")          # http://127.0.0.1:PORT/feed.xml
    feed_server.hits("/feed.xml")         # GET requests seen for that path
    feed_server.requests                  # every request: Seen(path, headers, status)
    feed_server.wait_hung_up("/feed.xml", timeout=10.0)  # True once a client hung up mid-answer

Routes can be replaced at runtime (``add`` again). Behaviour per route:

- ``etag``/``last_modified``: sent, and a matching If-None-Match / If-Modified-Since gets 304;
- ``gzip``: the body is gzip-compressed when the client accepts it (Content-Encoding: gzip);
- ``delay``: seconds before the response starts; ``drip``: seconds between 1 KB body chunks;
- ``trickle``: seconds between the single bytes of the status line and headers;
- ``endless``: the body never ends (chunks until the client hangs up).

A client that hangs up while the server is still answering (a write fails) is recorded, so a
test can tell that the client closed the connection.

Unknown paths get 404. Waits are cut short when the server stops, so tests end quickly and
every socket is closed.
"""

from __future__ import annotations

import gzip as gzip_module
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    gzip: bool = False
    delay: float = 0.0
    drip: float = 0.0
    endless: bool = False
    trickle: float = 0.0
    location: str | None = None


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: FeedServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (timeouts, size caps) is expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("#")[0]
        route = owner.route_for(path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status = _status_for(route, headers)
        owner.record(Seen(path, headers, status))  # before answering: the client may be quick
        self._respond(route, headers, status, owner.stopping)

    def _respond(
        self, route: Route | None, headers: Mapping[str, str], status: int, stop: threading.Event
    ) -> None:
        if route is None:
            self.send_error(404, "Not Found")
            return
        if route.delay and stop.wait(route.delay):
            return
        if route.location is not None:
            self.send_response(route.status)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if status == 304:
            self.send_response(304)
            self._validators(route)
            self.end_headers()
            return
        body = route.body
        compress = route.gzip and "gzip" in headers.get("accept-encoding", "")
        if compress:
            body = gzip_module.compress(body)
        head = [("Content-Type", route.content_type), *self._validator_headers(route)]
        if compress:
            head.append(("Content-Encoding", "gzip"))
        head.extend(route.headers.items())
        if not route.endless:
            head.append(("Content-Length", str(len(body))))
        if route.trickle:
            if self._trickle_head(route, head, stop):
                self._write_body(route, body, stop)
            return
        self.send_response(route.status)
        for name, value in head:
            self.send_header(name, value)
        self.end_headers()
        self._write_body(route, body, stop)

    def _trickle_head(
        self, route: Route, head: list[tuple[str, str]], stop: threading.Event
    ) -> bool:
        """The status line and headers one byte at a time; False when the client hung up."""
        reason = HTTPStatus(route.status).phrase
        lines = [f"HTTP/1.0 {route.status} {reason}", *(f"{k}: {v}" for k, v in head), "", ""]
        for byte in "\r\n".join(lines).encode("latin-1"):
            if not self._send(bytes([byte])) or stop.wait(route.trickle):
                return False
        return True

    def _send(self, data: bytes) -> bool:
        """Write and flush ``data``; False (and the hang-up recorded) when the client is gone."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.server.owner.hung_up(self.path.split("#")[0])
            return False
        return True

    def _validators(self, route: Route) -> None:
        for name, value in self._validator_headers(route):
            self.send_header(name, value)

    @staticmethod
    def _validator_headers(route: Route) -> list[tuple[str, str]]:
        found = []
        if route.etag is not None:
            found.append(("ETag", route.etag))
        if route.last_modified is not None:
            found.append(("Last-Modified", route.last_modified))
        return found

    def _write_body(self, route: Route, body: bytes, stop: threading.Event) -> None:
        if route.endless:
            chunk = (body or b"<!-- endless -->\n") * 64
            while not stop.is_set() and self._send(chunk):
                pass
            return
        if not route.drip:
            self._send(body)
            return
        for start in range(0, len(body), 1024):
            if not self._send(body[start : start + 1024]) or stop.wait(route.drip):
                return


def _status_for(route: Route | None, headers: Mapping[str, str]) -> int:
    if route is None:
        return 404
    fresh = route.location is None and (
        (route.etag is not None and headers.get("if-none-match") == route.etag)
        or (
            route.last_modified is not None
            and headers.get("if-modified-since") == route.last_modified
        )
    )
    return 304 if fresh else route.status


class FeedServer:
    """Serves registered paths on 127.0.0.1; see the module docstring."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self.requests: list[Seen] = []
        self._hung_up: dict[str, threading.Event] = {}
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()  # joins the request threads
        self._thread.join()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes | str = b"", **options: Any) -> str:
        """Serve ``body`` at ``path`` (see :class:`Route` for options); returns the URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            self._routes[path] = Route(body=data, **options)
        return self.url(path)

    def redirect(self, path: str, to: str, status: int = 301) -> str:
        """``path`` answers ``status`` with ``Location: to`` (a path or a URL)."""
        with self._lock:
            self._routes[path] = Route(status=status, location=to)
        return self.url(path)

    def route_for(self, path: str) -> Route | None:
        with self._lock:
            return self._routes.get(path)

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _hang_up_event(self, path: str) -> threading.Event:
        with self._lock:
            return self._hung_up.setdefault(path, threading.Event())

    def hung_up(self, path: str) -> None:
        """Record that a client hung up on ``path`` while the server was answering."""
        self._hang_up_event(path).set()

    def wait_hung_up(self, path: str, timeout: float = 10.0) -> bool:
        """True once a client has hung up on ``path`` mid-answer (waits up to ``timeout``)."""
        return self._hang_up_event(path).wait(timeout)

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for seen in self.requests if seen.path == path)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()
