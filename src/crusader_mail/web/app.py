"""The web endpoints of ``crusader-mail serve`` (Starlette).

Contract: ``build_app(settings, clock, mailer, store) -> Starlette`` with

- ``GET /unsubscribe?token=`` and ``GET /confirm?token=``: a page with a button; they change
  NOTHING (mail scanners follow links).
- ``POST /unsubscribe`` (also RFC 8058 one-click: body ``List-Unsubscribe=One-Click``, token in
  the query) and ``POST /confirm``: do it through the subscription service, answer with a page.
  Leaving sends no mail: the page is the goodbye (and says how to come back). The welcome is
  queued with the change and sent after the response has gone out
  (:class:`~crusader_mail.subscriptions.outbox.Drainer`, a Starlette background task), so a
  slow or unreachable SendGrid never delays an answer or undoes a change. The unsubscribe
  page of an active reader offers a pause instead (a form to ``/preferences``). A ``POST
  /unsubscribe`` with its token in the query takes the lean path of
  :mod:`crusader_mail.web.oneclick` (batched, the same answers).
- ``GET /preferences?token=`` (a PREFERENCES token): the reader's choices, changing nothing;
  ``POST /preferences`` (the token, an ``action`` of
  :data:`~crusader_mail.subscriptions.choices.ACTIONS` and its fields), refused from another
  site as ``/subscribe`` is: saves frequency and topics, pauses, resumes or leaves, through
  the service (each change in the consent history), and answers with a page.
- ``POST /inbound[/{secret}]`` and ``POST /events``: SendGrid's hooks
  (:mod:`crusader_mail.web.sendgrid_hooks`).
- ``GET /archive/``: the public archive of issues, read-only
  (:mod:`crusader_mail.web.archive_files`).
- ``GET /subscribe``: the subscribe form (no script). ``POST /subscribe``: double opt-in
  through the service (:mod:`crusader_mail.subscriptions.signup`), in this order: a form from
  another site is refused (``403``, the form again: ``Origin``, else ``Referer``, must be
  ``newsletter.site_url``'s origin, serve's ``public_url``'s, or this host's; ``Origin: null``
  or neither header is refused, so an old browser told to hide its referrer cannot be used
  from another site); a form without a fresh token (the blog's snippet, too fast, too old) is
  shown again with the address filled in; a filled honeypot gets the answer a person gets and
  nothing is done; an address that is none gets the form again (``400``); over the per-client
  or the global limit, ``429``. Otherwise the answer, "check your inbox", goes out at once,
  the same page and status for any address, and the request is made after it (a background
  task, then the drain): nothing in the answer, its status or its timing depends on whether
  or how the address is listed.

Pages are plain HTML from ``templates_dir/web``, with the newsletter's name, no scripts, and a
strict CSP. Every response carries the security headers (an uncaught error's ``500``, a
``404``, ``405`` or ``413`` too), and every request body is capped while it streams (``413``):
``MAX_BODY`` for Inbound Parse, ``MAX_EVENTS_BODY`` for events, ``MAX_FORM_BODY`` elsewhere.
``/unsubscribe/`` and ``/confirm/`` redirect to the configured public URL of the page, or to
its bare path: never to the host a request names. ``crusader-mail serve`` runs the app with
:mod:`crusader_mail.web.server` (the time a client may take to send a request is bounded).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crusader_mail.clock import Clock
from crusader_mail.delivery.mailer import Mailer
from crusader_mail.inbox.process import InboxContext
from crusader_mail.settings import Settings
from crusader_mail.storage.contract import Store
from crusader_mail.subscriptions.outbox import Drainer
from crusader_mail.web.archive_files import archive_routes
from crusader_mail.web.headers import SECURITY_HEADERS
from crusader_mail.web.oneclick import Batches, OneClick
from crusader_mail.web.pages import MAX_FORM_BODY, Pages
from crusader_mail.web.sendgrid_hooks import MAX_BODY, MAX_EVENTS_BODY, SendGridHooks


def build_app(settings: Settings, clock: Clock, mailer: Mailer, store: Store) -> Starlette:
    """The app; ``mailer`` sends the queued replies after each response that may queue one."""
    ctx = InboxContext.create(settings, clock, store)
    service = ctx.service()
    drain = Drainer(store, mailer, clock)
    web = Pages(service, drain)
    hooks = SendGridHooks(ctx, service, drain)
    routes = [
        Route("/", web.home, methods=["GET"]),
        Route("/unsubscribe", web.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe", web.unsubscribe, methods=["POST"]),
        Route("/confirm", web.confirm_page, methods=["GET"]),
        Route("/confirm", web.confirm, methods=["POST"]),
        Route("/subscribe", web.subscribe_form, methods=["GET"]),
        Route("/subscribe", web.subscribe, methods=["POST"]),
        Route("/preferences", web.preferences_page, methods=["GET"]),
        Route("/preferences", web.preferences, methods=["POST"]),
        Route("/inbound", hooks.inbound, methods=["POST"]),
        Route("/inbound/{secret}", hooks.inbound, methods=["POST"]),
        Route("/events", hooks.events, methods=["POST"]),
        *archive_routes(settings.archive_dir),  # the public archive, read-only
    ]
    batches = Batches(web.unsubscribe_all, drain)
    app = _App(routes=routes, front=lambda inner: OneClick(inner, batches, web.page))
    app.router.redirect_slashes = False  # Starlette's would send the client to its Host header
    app.router.default = _SlashRedirect(settings)
    return app


class _App(Starlette):
    """Starlette with :class:`_Guard` outside everything, its error handler included: the
    security headers go on every answer, an uncaught error's ``500`` too; inside it, ``front``
    (the one-click's lean path, :mod:`crusader_mail.web.oneclick`) around the rest."""

    def __init__(self, routes: list[BaseRoute], front: Callable[[ASGIApp], ASGIApp]) -> None:
        super().__init__(routes=routes)
        self.front = front

    def build_middleware_stack(self) -> ASGIApp:
        return _Guard(self.front(super().build_middleware_stack()))


class _SlashRedirect:
    """Where no route matches: ``/unsubscribe/`` and ``/confirm/`` (a trailing slash added by
    hand or by a mail client) are redirected (``307``, the method kept) to the configured
    public URL of the page (``newsletter.unsubscribe_url``, ``confirm_url``) or, when none is
    set, to the path alone; never to a host named by the request. Anything else is ``404``."""

    def __init__(self, settings: Settings) -> None:
        self.pages = {
            "/unsubscribe/": settings.newsletter.unsubscribe_url or "/unsubscribe",
            "/confirm/": settings.newsletter.confirm_url or "/confirm",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self.pages.get(scope["path"]) if scope["type"] == "http" else None
        if target is None:
            raise HTTPException(404)
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            target += ("&" if "?" in target else "?") + query
        await RedirectResponse(target, status_code=307)(scope, receive, send)


def body_limit(path: str) -> int:
    """The largest request body accepted on ``path``."""
    if path == "/inbound" or path.startswith("/inbound/"):
        return MAX_BODY
    if path == "/events":
        return MAX_EVENTS_BODY
    return MAX_FORM_BODY


class _Guard:
    """Around the whole app: the security headers on every response (JSON, redirects and
    errors too), and request bodies capped as they stream: a declared ``Content-Length`` over
    the cap is refused before anything is read, and a chunked body is cut off (``413``) once it
    grows past it. A client gone before its body arrived (it hung up, or ran out of time) is
    not an error: there is nobody left to answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if message["status"] == 500:  # an uncaught error: the server hangs up after it
                    headers["Connection"] = "close"
            await send(message)

        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse({"error": "too large"}, status_code=413)(
                scope, receive, send_guarded
            )
            return
        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # Starlette's exception middleware answers 413
                    raise HTTPException(413, "too large")
            return message

        try:
            await self.app(scope, receive_capped, send_guarded)
        except ClientDisconnect:
            return
