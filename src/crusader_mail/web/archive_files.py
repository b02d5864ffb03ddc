"""``crusader-mail serve``'s copy of the public archive: ``GET /archive/`` serves the files of
``archive_dir`` as they are (``index.html`` for the folder), read-only: any other method is
``405``. ``/archive`` redirects to ``/archive/`` (a path on the same host, never one a request
names). Its answers carry the app's security headers (:class:`crusader_mail.web.app._Guard`)
with a policy of their own: pictures from the blog may load, nothing else (no script, no frame,
no form).
"""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

PREFIX = "/archive"
ARCHIVE_POLICY = (
    "default-src 'none'; img-src https: http:; style-src 'unsafe-inline'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class ArchiveFiles:
    """The files of ``folder`` (absent: every path is ``404``), with :data:`ARCHIVE_POLICY`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = StaticFiles(directory=folder, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.folder.is_dir():  # nothing published yet
            raise HTTPException(404)

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = ARCHIVE_POLICY
                headers["Cache-Control"] = "no-cache"
            await send(message)

        await self.files(scope, receive, with_policy)


async def _to_folder(request: Request) -> Response:
    return RedirectResponse(PREFIX + "/", status_code=308)


def archive_routes(folder: Path) -> list[BaseRoute]:
    """``/archive`` (a redirect) and ``/archive/...`` (the files of ``folder``)."""
    return [
        Route(PREFIX, _to_folder, methods=["GET", "HEAD"]),
        Mount(PREFIX, app=ArchiveFiles(folder)),
    ]
