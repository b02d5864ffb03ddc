"""The lean path of ``POST /unsubscribe?token=…`` (a mail client's RFC 8058 one-click, or the
page's button when its link kept the token): the one request that comes in bursts, a few
hundred at once after an issue goes out.

:class:`OneClick` sits in front of Starlette's routing (inside ``_Guard``, so the body cap and
the security headers are as for every request). A ``POST /unsubscribe`` whose query has a
token skips routing, the form parser and a worker thread of its own: the token joins the next
batch of :class:`Batches`: one unit of change for the one-clicks that arrived while the
previous ones were being stored (at most ``MOST`` in one, so a transaction stays short; at
most ``LANES`` units at once, so their waits on the database overlap).
The answers are the ordinary route's (:meth:`Pages.unsubscribe_all
<crusader_mail.web.pages.Pages.unsubscribe_all>`: the same token check, the same service rule,
the same page), each sent only once its batch is stored. When a batch fails (a lost
connection, a deadlock with another unit of change), each of its requests goes the ordinary way
alone, and gets the answer the ordinary route gives it. Once the batches in flight are done,
the queued replies are sent, as after the ordinary route's answer (:class:`~crusader_mail.
subscriptions.outbox.Drainer`: one drain at a time). Any other request goes the ordinary way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

MOST = 32  # one-clicks in one unit of change at most
LANES = 4  # units of change at once: their round trips to the database overlap

T = TypeVar("T")
R = TypeVar("R")


class Batches(Generic[T, R]):
    """``work`` on lists of items in worker threads, at most ``lanes`` calls at a time: the
    items that arrive while every lane is busy make the next calls (at most ``most`` in
    one). ``await batches(item)`` is ``item``'s result, or ``None`` when its call raised.
    ``then`` runs in a worker thread, not awaited, each time the last busy lane is done (after
    every call begun meanwhile)."""

    def __init__(
        self,
        work: Callable[[list[T]], list[R]],
        then: Callable[[], None],
        most: int = MOST,
        lanes: int = LANES,
    ) -> None:
        self.work = work
        self.then = then
        self.most = most
        self.lanes = lanes
        self._waiting: list[tuple[T, asyncio.Future[R | None]]] = []
        self._busy = 0  # lanes running a call, or about to
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R | None:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[R | None] = loop.create_future()
        self._waiting.append((item, result))
        if self._busy < self.lanes:
            self._busy += 1
            self._start(self._lane())
        return await result

    def _start(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)  # kept until done: the loop holds tasks weakly
        task.add_done_callback(self._tasks.discard)

    async def _lane(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.most]
                del self._waiting[: self.most]
                try:
                    results: list[R | None] = list(
                        await run_in_threadpool(self.work, [item for item, _ in batch])
                    )
                except Exception:
                    results = [None] * len(batch)  # each goes the ordinary way alone
                for (_item, waiter), found in zip(batch, results, strict=True):
                    if not waiter.done():
                        waiter.set_result(found)
        finally:
            self._busy -= 1
        if not self._busy:  # the last lane: every call begun is done
            self._start(run_in_threadpool(self.then))


class OneClick(Generic[R]):
    """The ASGI app in front of ``app`` (see the module docstring): ``batches`` gives a
    token's answer, ``answer`` makes it a response."""

    def __init__(
        self, app: ASGIApp, batches: Batches[str, R], answer: Callable[[R], Response]
    ) -> None:
        self.app = app
        self.batches = batches
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/unsubscribe"
            and scope["method"] == "POST"
            and (token := QueryParams(scope["query_string"]).get("token", ""))
        ):
            found = await self.batches(token)
            if found is not None:
                await self.answer(found)(scope, receive, send)
                return
        await self.app(scope, receive, send)
