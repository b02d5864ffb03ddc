"""The web app on a real socket (uvicorn on 127.0.0.1) for the tests (no tests here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from crusader_mail.clock import Clock
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.web.app import build_app


@contextmanager
def running(app: ASGIApp) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 in a thread, for the block: its URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            proxy_headers=False,  # as serve: only server.trusted_proxy_header is believed
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test")
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            thread.join(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()


@contextmanager
def web_app(settings: Settings, clock: Clock) -> Iterator[str]:
    """``crusader-mail serve`` for ``settings`` (replies to the configured SendGrid): its URL."""
    mailer = make_mailer(settings, clock, sleep=lambda _s: None)
    with running(build_app(settings, clock, mailer, open_store(settings, clock))) as url:
        yield url


def eventually(found: Callable[[], bool]) -> None:
    """Until ``found()`` (replies go out after the answer): the wait is a safety net, never a
    measurement."""
    deadline = time.monotonic() + 30
    while not found():
        assert time.monotonic() < deadline, "it never happened"
        time.sleep(0.02)
