"""``crusader-mail subscribers``: add, remove, list, import, export, stats, tidy.

Contract: a thin layer over the store's roster (:func:`crusader_mail.storage.open_store`) and
:mod:`crusader_mail.subscriptions.imports`. ``add``, ``remove`` and ``import`` print addresses
masked (their output lands in logs); ``list`` and ``export`` print them whole, because there
the user asked for the list itself. Every command takes ``--json``: one JSON document on
stdout, the same addresses masked or whole as its text, notes on stderr. Failures are raised as
:class:`~crusader_mail.errors.SubscriberError` subclasses; ``cli.main`` prints their one line.
``add``, ``remove`` and ``import`` end by sending the replies waiting in the store
(:func:`.replies.send_waiting`), when there are any.
``import`` and ``export`` are in :mod:`.transfer`, the waiting replies in :mod:`.replies`.
"""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import JSON_OPTION, console, emit
from crusader_mail.cli.replies import send_waiting, with_replies
from crusader_mail.cli.transfer import export, import_
from crusader_mail.errors import SubscriberError
from crusader_mail.models import Source, Status
from crusader_mail.storage.contract import Roster
from crusader_mail.storage.rows import (
    format_time,
)
from crusader_mail.subscriptions.export import readers_json
from crusader_mail.subscriptions.forgetting import other_traces
from crusader_mail.util.masking import mask_email

STATUS_CHOICE = click.Choice([status.value for status in Status])


def _readers(app: AppContext) -> Roster:
    return app.store().roster


@click.group()
def subscribers() -> None:
    """Manage the subscriber list (subscribers_dir/subscribers.csv)."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="The reader's name.")
@click.option(
    "--status", type=STATUS_CHOICE, default=Status.ACTIVE.value, show_default=True, help="Status."
)
@JSON_OPTION
@click.pass_obj
def add(app: AppContext, email: str, name: str, status: str, as_json: bool) -> None:
    """Add EMAIL to the list. A reader already there is left as they are."""
    with app.store().roster.edit() as roster:
        before = roster.get(email)
        after = roster.add(email, name=name, status=Status(status), via=Source.CLI, ref="cli add")
    shown = mask_email(after.email)
    if as_json:
        done = {
            "email": shown,
            "added": before is None,
            "status": after.status.value,
            "name_added": before is not None and after.name != before.name,
        }
        emit(with_replies(done, send_waiting(app, as_json=True)))
        return
    if before is None:
        click.echo(f"added {shown} ({after.status.value})")
    elif before.status in (Status.UNSUBSCRIBED, Status.COMPLAINED):
        click.echo(
            f"{shown} is already on the list ({before.status.value}): unchanged; a reader who "
            "left comes back only by subscribing again themselves"
        )
    else:
        named = " (name added)" if after.name != before.name else ""
        click.echo(f"{shown} is already on the list ({before.status.value}): unchanged{named}")
    send_waiting(app)


@subscribers.command()
@click.argument("email")
@click.option(
    "--forget", is_flag=True, help="Erase every trace of the address (a privacy request)."
)
@JSON_OPTION
@click.pass_obj
def remove(app: AppContext, email: str, forget: bool, as_json: bool) -> None:
    """Unsubscribe EMAIL now, or with --forget erase it from the list entirely."""
    shown = mask_email(email.strip())
    if forget:
        store = app.store()
        with store.roster.edit() as roster:
            erased = roster.forget(email)
        traces = other_traces(store, app.settings.outbox_dir)
        if as_json:
            emit({"email": shown, "erased": erased, "other_places": traces})
            return
        click.echo(f"erased {shown}" if erased else f"{shown} is not on the list: nothing to erase")
        click.echo("other places to check:")
        for trace in traces:
            click.echo(f"  - {trace}")
        return
    with app.store().roster.edit() as roster:
        before = roster.get(email)
        after = roster.unsubscribe(email, via=Source.CLI, ref="cli remove")
    if before is None or after is None:
        raise SubscriberError(f"{shown} is not on the list")
    if as_json:
        done = {
            "email": mask_email(after.email),
            "status": after.status.value,
            "was": before.status.value,
        }
        emit(with_replies(done, send_waiting(app, as_json=True)))
        return
    if before.status is Status.UNSUBSCRIBED:
        click.echo(f"{mask_email(after.email)} was already unsubscribed")
    else:
        click.echo(f"unsubscribed {mask_email(after.email)} (was {before.status.value})")
    send_waiting(app)


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, help="Only readers with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_(app: AppContext, status: str | None, as_json: bool) -> None:
    """Print the readers with their full addresses."""
    wanted = Status(status) if status else None
    readers = app.store().roster.iter(wanted)
    if as_json:
        click.echo(json.dumps(readers_json(readers), indent=2))
        return
    table = Table(title=f"subscribers ({status or 'all'})")
    table.add_column("email", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("since", no_wrap=True)
    count = 0
    for sub in readers:
        since = sub.left_at or sub.confirmed_at or sub.subscribed_at or sub.updated_at
        table.add_row(sub.email, Text(sub.name), sub.status.value, format_time(since)[:10])
        count += 1
    table.caption = f"{count} reader{'s' if count != 1 else ''}"
    console().print(table)


@subscribers.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def stats(app: AppContext, as_json: bool) -> None:
    """Count the readers by status."""
    counts = app.store().roster.counts()
    total = sum(counts.values())
    if as_json:
        click.echo(json.dumps({"counts": {s.value: n for s, n in counts.items()}, "total": total}))
        return
    table = Table(title="subscribers")
    table.add_column("status")
    table.add_column("readers", justify="right")
    for status, count in counts.items():
        table.add_row(status.value, str(count))
    table.add_row("total", str(total), style="bold")
    console().print(table)


@subscribers.command()
@JSON_OPTION
@click.pass_obj
def tidy(app: AppContext, as_json: bool) -> None:
    """Put a hand-edited list in order (it is checked first): rows sorted by address, and a
    list kept before addresses were one reader per mailbox rewritten with case variants merged."""
    changed = app.store().roster.tidy()
    if as_json:
        emit({"changed": changed})
        return
    click.echo("put the list in order" if changed else "the list is already in order")


subscribers.add_command(import_)
subscribers.add_command(export)
