"""`crusader-mail serve [--host H] [--port N] [--same-host] [--json]`: the web endpoints.

Serves :func:`crusader_mail.web.app.build_app` with uvicorn: one-click unsubscribe,
confirmation buttons, SendGrid Inbound Parse and the Event Webhook. Replies go out through
SendGrid after each answer. The socket is bound here first, so an address in use is one error
line (exit 1), not uvicorn's exit 3. uvicorn runs with :class:`~crusader_mail.web.server.
ServeConfig`: a client gets ``server.header_timeout`` seconds to send a request's head and
``server.body_timeout`` for its body, then its connection is closed.

The server must share its store with the scheduled job, or a reader's choice made here never
reaches the next send. A shared database (``database_url``) is shared; the files store is
shared only when the job runs on this machine, in this folder (cron or a systemd timer), which
``--same-host`` or ``[server] same_host = true`` states (:attr:`Settings.shares_store`).
Otherwise the files store is refused (exit 2): a GitHub Action works on its own checkout and
would never see this one's changes.

Once listening it says where on stderr, or with ``--json`` as one JSON line on stdout
(``{"listening": "http://127.0.0.1:8025", "store": "files"}``), flushed, so a supervisor or a
test can read the address (``--port 0``: any free port) and wait for nothing else.
"""

from __future__ import annotations

import json
import socket

import click
import uvicorn

from crusader_mail.cli.context import AppContext
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.errors import ConfigError, CrusaderMailError
from crusader_mail.web.app import build_app
from crusader_mail.web.server import ServeConfig

BACKLOG = 2048  # connections the kernel holds until serve accepts them (uvicorn's default):
# a burst of one-clicks after an issue must not overflow it (a dropped connection is retried
# by the client a second later)
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
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Once listening, print one JSON line on stdout: {"listening": URL, "store": KIND}.',
)
@click.pass_obj
def serve(
    app: AppContext, host: str | None, port: int | None, same_host: bool, as_json: bool
) -> None:
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
        url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
        if as_json:
            kind = "database" if settings.uses_database else "files"
            click.echo(json.dumps({"listening": url, "store": kind}))  # echo flushes
        else:
            click.echo(f"crusader-mail: serving {settings.newsletter.name} on {url}", err=True)
        config = ServeConfig(web, settings.server, log_level="warning", access_log=False)
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
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise CrusaderMailError(f"serve: cannot listen on {host}:{port}: {reason}") from None
    return sock
