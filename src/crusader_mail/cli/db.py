"""``crusader-mail db upgrade|status [--json]``: the PostgreSQL store's schema (``database_url``).

A thin layer over :func:`crusader_mail.storage.upgrade_database` and
:func:`crusader_mail.storage.database_status`; the server is named as ``host:port/database``,
never with its password. ``--json`` prints one object: ``{"where", "before", "after",
"applied"}`` for ``upgrade`` (a version ``null``: no schema), ``{"where", "version", "latest",
"ok"}`` for ``status`` (printed before ``status`` exits 2 on a schema it cannot use).
"""

from __future__ import annotations

import json

import click

from crusader_mail.cli.context import AppContext
from crusader_mail.storage import database_status, upgrade_database


@click.group()
def db() -> None:
    """The PostgreSQL store's schema (set CRUSADER_MAIL_DATABASE_URL)."""


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def upgrade(app: AppContext, as_json: bool) -> None:
    """Create or migrate the schema to this version's; running it again changes nothing."""
    report = upgrade_database(app.settings)
    if as_json:
        fields = {"before": report.before, "after": report.after, "applied": report.applied}
        click.echo(json.dumps({"where": report.where, **fields}))
        return
    if not report.applied:
        click.echo(f"{report.where}: the schema is up to date (version {report.after})")
        return
    before = "no schema" if report.before is None else f"version {report.before}"
    click.echo(
        f"{report.where}: schema upgraded from {before} to version {report.after} "
        f"({', '.join(report.applied)})"
    )


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status(app: AppContext, as_json: bool) -> None:
    """Print the schema version; exit 2 when `db upgrade` is needed or the schema is newer."""
    report = database_status(app.settings)
    if as_json:
        fields = {"version": report.after, "latest": report.latest, "ok": report.ok}
        click.echo(json.dumps({"where": report.where, **fields}))
    report.check()
    if not as_json:
        click.echo(f"{report.where}: schema version {report.after}, up to date")
