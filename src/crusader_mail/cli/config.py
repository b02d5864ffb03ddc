"""``crusader-mail config check``."""

from __future__ import annotations

import json

import click
from rich.table import Table

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console as make_console
from crusader_mail.settings import effective_settings


@click.group()
def config() -> None:
    """Inspect the settings."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def check(app: AppContext, as_json: bool) -> None:
    """Validate the settings and print them with where each value came from.

    Secrets are masked. A bad value names the key, its source and what is expected (exit 2).
    """
    loaded = app.loaded()
    rows = effective_settings(loaded)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "config_file": str(loaded.config_file) if loaded.config_file else None,
                    "settings": [{"key": k, "value": v, "source": s} for k, v, s in rows],
                },
                indent=2,
            )
        )
        return
    console = make_console()
    table = Table(title=f"settings ({loaded.config_file or 'no config file'})")
    for column in ("key", "value", "source"):
        table.add_column(column, overflow="fold")
    for key, value, source in rows:
        table.add_row(key, value, source)
    console.print(table)
    console.print("settings are valid", style="green")
