"""The replies waiting in the store (welcome, goodbye, confirmation), sent by a command once its
own change is stored (``subscribers add``, ``remove``, ``import``): :func:`send_waiting`."""

from __future__ import annotations

from collections.abc import Mapping

import click

from crusader_mail.cli.context import AppContext
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.errors import ConfigError, CrusaderMailError
from crusader_mail.subscriptions.outbox import send_queued


def send_waiting(app: AppContext, *, as_json: bool = False) -> dict[str, int] | None:
    """Send the replies waiting in the store (queued by the server, the inbox or an earlier
    command) now that this command's change is stored; one line about it (with ``as_json``
    the counts are returned for the JSON document instead), nothing when none wait. A failure
    here is a warning: the change itself is done."""
    store = app.store()
    try:
        waiting = store.mail.waiting()
        if not waiting:
            return None
        try:
            mailer = make_mailer(app.settings, app.clock)
        except ConfigError:
            replies = "reply" if waiting == 1 else "replies"
            click.echo(
                f"{waiting} {replies} waiting: sent by the next command run with "
                "SENDGRID_API_KEY (run, inbox process, serve)",
                err=as_json,
            )
            return {"sent": 0, "failed": 0, "waiting": waiting}
        report = send_queued(store, mailer, app.clock)
        if not as_json:
            click.echo(report.line())
        return report.as_json()
    except CrusaderMailError as error:
        click.echo(f"crusader-mail: warning: the waiting replies were not sent: {error}", err=True)
        return None


def with_replies(data: Mapping[str, object], replies: dict[str, int] | None) -> dict[str, object]:
    return dict(data) if replies is None else {**data, "replies": replies}
