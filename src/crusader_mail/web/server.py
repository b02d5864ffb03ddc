"""How ``crusader-mail serve`` runs the app: uvicorn's httptools protocol (its C parser, on
uvloop's event loop) with every read bounded.

uvicorn bounds the wait for the next request on a kept-alive connection
(``timeout_keep_alive``), but neither the size of a request's head under httptools nor the time
a client may take to send a head or a body: a client trickling a byte now and then holds its
connection (and a file descriptor) forever. :class:`BoundedHttpToolsProtocol` caps a head at
``MAX_HEAD`` bytes (``400``) and gives each request a deadline for its head
(``server.header_timeout``, from the connection's first byte, or from the previous answer on a
kept-alive connection) and one for its body (``server.body_timeout``, from the end of the
head). A client that misses one gets ``408`` (when it had begun a request nobody answered yet)
and the connection is closed; the app sees the client gone. Every answer the protocol gives
itself (``400`` for a malformed or oversized head, ``408``) carries the security headers of
:mod:`crusader_mail.web.app`.
"""

from __future__ import annotations

import asyncio
import http
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from crusader_mail.settings import ServerSettings
from crusader_mail.web.headers import SECURITY_HEADERS

MAX_HEAD = 16 * 1024  # bytes of request line and headers: tokens are short
KEEP_ALIVE = 5  # seconds an idle kept-alive connection stays open


class ServeConfig(uvicorn.Config):
    """uvicorn's settings for ``serve``: :class:`BoundedHttpToolsProtocol` on uvloop, no
    WebSockets, the read deadlines of ``server``, and no ``X-Forwarded-For`` believed (the app
    reads only ``server.trusted_proxy_header``)."""

    def __init__(self, app: ASGIApp, server: ServerSettings, **options: Any) -> None:
        super().__init__(
            app,
            http=BoundedHttpToolsProtocol,
            loop="uvloop",
            ws="none",
            timeout_keep_alive=KEEP_ALIVE,
            proxy_headers=False,  # the client is the peer, or server.trusted_proxy_header's word
            **options,
        )
        self.header_timeout = server.header_timeout
        self.body_timeout = server.body_timeout


Phase = Literal["head", "body"]


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One connection: its heads capped, and a deadline running while the client owes us a
    request's head or body."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        defaults = ServerSettings()
        self.timeouts: dict[Phase, float] = {
            "head": getattr(config, "header_timeout", defaults.header_timeout),
            "body": getattr(config, "body_timeout", defaults.body_timeout),
        }
        self.owed: Phase | None = "head"  # what the client owes now
        self.head_bytes = 0  # bytes received while it owed a head
        self.head_size = 0  # of the request line and headers parsed so far
        self.phase: Phase | None = None  # what the deadline running is for
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self.owed == "head":
            self.head_bytes += len(data)
        super().data_received(data)
        if self.owed == "head" and self.head_bytes > MAX_HEAD and not self.transport.is_closing():
            self.send_400_response("Request head too large.")  # and it has not ended yet
        self._watch()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.owed, self.head_size = "head", 0  # (a pipelined one may begin before an answer)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.owed = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.owed = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.owed is None and (self.cycle is None or self.cycle.response_complete):
            self.owed, self.head_bytes = "head", 0  # nothing more came yet: the next head
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a malformed or oversized head, with the security headers."""
        self._refuse(400, msg)

    def _count(self, size: int) -> None:
        """A head whose parts add up to more than ``MAX_HEAD`` is refused (``400``)."""
        self.head_size += size
        if self.head_size > MAX_HEAD:
            raise _HeadTooLarge  # the parser fails: uvicorn answers 400

    def _watch(self) -> None:
        """Start the deadline of what the client owes now (a head or a body), if it changed."""
        phase = None if self.transport.is_closing() else self.owed
        if phase == self.phase:
            return
        self._cancel()
        self.phase = phase
        if phase is not None:
            self.deadline = self.loop.call_later(self.timeouts[phase], self._expired)

    def _cancel(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if self.phase == "body" else None
        if cycle is None:
            begun = self.head_bytes > 0  # part of a head came: answer it
        else:
            begun = not cycle.response_started
            if not cycle.response_complete:
                cycle.disconnected = True  # the app's reads end, and its answer goes nowhere
                cycle.message_event.set()
        if begun:
            self._refuse(408, "The request took too long to arrive.")
        else:
            self.transport.close()

    def _refuse(self, status: int, text: str) -> None:
        """Answer ``status`` with ``text`` and the security headers, then close."""
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # an answer is on its way already: just end it
            return
        body = text.encode("ascii", "replace")
        lines = [
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
            "content-type: text/plain; charset=utf-8",
            f"content-length: {len(body)}",
            "connection: close",
            *(f"{name.lower()}: {value}" for name, value in SECURITY_HEADERS.items()),
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.transport.close()


class _HeadTooLarge(Exception):
    """A request's head grew past ``MAX_HEAD``."""
