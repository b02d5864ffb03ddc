"""`crusader-mail serve [--host 127.0.0.1] [--port 8025]`: the web endpoints (uvicorn).

Serves :func:`crusader_mail.server.build_app`: one-click unsubscribe, confirmation buttons,
SendGrid Inbound Parse and the Event Webhook. Replies go out through SendGrid.
"""

from __future__ import annotations

import click
import uvicorn

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.inbox import make_mailer
from crusader_mail.server import build_app


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: server.host).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 8025).")
@click.pass_obj
def serve(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the unsubscribe/confirm pages, Inbound Parse and the Event Webhook."""
    settings = app.settings
    web = build_app(settings, app.clock, make_mailer(settings))
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    click.echo(
        f"crusader-mail: serving {settings.newsletter.name} on http://{host}:{port}", err=True
    )
    uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)
