"""`crusader-mail serve [--host 127.0.0.1] [--port 8025] [--same-host]`: the web endpoints.

Serves :func:`crusader_mail.web.app.build_app` with uvicorn: one-click unsubscribe,
confirmation buttons, SendGrid Inbound Parse and the Event Webhook. Replies go out through
SendGrid after each answer. The socket is bound here first, so an address in use is one error
line (exit 1), not uvicorn's exit 3.

The server must share its store with the scheduled job, or a reader's choice made here never
reaches the next send. A shared database (``database_url``) is shared; the files store is
shared only when the job runs on this machine, in this folder (cron or a systemd timer), which
``--same-host`` or ``[server] same_host = true`` states (:attr:`Settings.shares_store`).
Otherwise the files store is refused (exit 2): a GitHub Action works on its own checkout and
would never see this one's changes.
"""

from __future__ import annotations

import socket

import click
import uvicorn

from crusader_mail.cli.context import AppContext
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.errors import ConfigError, CrusaderMailError
from crusader_mail.web.app import build_app

NOT_SHARED = (
    "serve: the files store keeps readers' choices in this checkout, and a scheduled job "
    "running elsewhere (a GitHub Action works on its own checkout) would never see them: set "
    "database_url to share one store, or pass --same-host when `crusader-mail run` is "
    "scheduled on this machine in this folder (cron, systemd timer)"
)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: server.host).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 8025).")
@click.option(
    "--same-host",
    is_flag=True,
    help="The scheduled job runs on this machine, in this folder (cron, systemd timer): the "
    "files store is shared with it (as [server] same_host = true says).",
)
@click.pass_obj
def serve(app: AppContext, host: str | None, port: int | None, same_host: bool) -> None:
    """Serve the unsubscribe/confirm pages, Inbound Parse and the Event Webhook.

    The store must be shared with the scheduled job: a database (database_url), or the files
    store with --same-host (or [server] same_host = true)."""
    settings = app.settings
    if not (same_host or settings.shares_store):
        raise ConfigError(NOT_SHARED)
    store = app.store()
    web = build_app(settings, app.clock, make_mailer(settings, app.clock), store)
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    with listen(host, port) as sock:
        bound = sock.getsockname()[1]  # the real port, also for --port 0
        click.echo(
            f"crusader-mail: serving {settings.newsletter.name} on http://{host}:{bound}", err=True
        )
        config = uvicorn.Config(web, log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; CrusaderMailError (one line) when it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as error:
        raise CrusaderMailError(f"serve: cannot listen on {host}:{port}: {error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise CrusaderMailError(f"serve: cannot listen on {host}:{port}: {reason}") from None
    return sock
