"""``crusader-mail db upgrade|status``: the PostgreSQL store's schema (``database_url``).

A thin layer over :func:`crusader_mail.storage.upgrade_database` and
:func:`crusader_mail.storage.database_status`; the server is named as ``host:port/database``,
never with its password.
"""

from __future__ import annotations

import click

from crusader_mail.cli.context import AppContext
from crusader_mail.storage import database_status, upgrade_database


@click.group()
def db() -> None:
    """The PostgreSQL store's schema (set CRUSADER_MAIL_DATABASE_URL)."""


@db.command()
@click.pass_obj
def upgrade(app: AppContext) -> None:
    """Create or migrate the schema to this version's; running it again changes nothing."""
    report = upgrade_database(app.settings)
    if not report.applied:
        click.echo(f"{report.where}: the schema is up to date (version {report.after})")
        return
    before = "no schema" if report.before is None else f"version {report.before}"
    click.echo(
        f"{report.where}: schema upgraded from {before} to version {report.after} "
        f"({', '.join(report.applied)})"
    )


@db.command()
@click.pass_obj
def status(app: AppContext) -> None:
    """Print the schema version; exit 2 when `db upgrade` is needed or the schema is newer."""
    report = database_status(app.settings)
    click.echo(f"{report.where}: schema version {report.before}, up to date")
