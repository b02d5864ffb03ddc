"""``crusader-mail config check``."""

from __future__ import annotations

import json

import click
from rich.table import Table

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console as make_console
from crusader_mail.settings import Leaving, effective_settings

ONE_CLICK = {
    "ours": "ours (serve's /unsubscribe)",
    "sendgrid": "SendGrid's (subscription tracking)",
}
BY_MAIL = {"imap": "IMAP ([imap] host)", "inbound parse": "Inbound Parse (serve)"}
NO_ONE_CLICK = (
    "no one-click unsubscribe: mail providers expect one in bulk mail; set [sendgrid] "
    "subscription_tracking = true, or newsletter.unsubscribe_url with a shared store"
)


@click.group()
def config() -> None:
    """Inspect the settings."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def check(app: AppContext, as_json: bool) -> None:
    """Validate the settings and print them with where each value came from.

    Secrets are masked. A bad value names the key, its source and what is expected (exit 2).
    Then how readers can leave: by one click (ours, SendGrid's, none) and by mail (IMAP,
    Inbound Parse, none), with a warning when there is no one-click.
    """
    loaded = app.loaded()
    rows = effective_settings(loaded)
    leaving = loaded.settings.leaving()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "config_file": str(loaded.config_file) if loaded.config_file else None,
                    "settings": [{"key": k, "value": v, "source": s} for k, v, s in rows],
                    "leaving": {
                        "one_click": leaving.one_click,
                        "by_mail": leaving.by_mail,
                        "warnings": _warnings(leaving),
                    },
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
    console.print(
        "readers can leave: one click: "
        + (ONE_CLICK[leaving.one_click] if leaving.one_click else "none")
        + "; by mail: "
        + (BY_MAIL[leaving.by_mail] if leaving.by_mail else "none")
    )
    for warning in _warnings(leaving):
        console.print(f"warning: {warning}", style="yellow")


def _warnings(leaving: Leaving) -> list[str]:
    """What ``config check`` warns about how readers leave (the refusal's line comes first)."""
    warnings = [leaving.problem] if leaving.problem else []
    if leaving.one_click is None:
        warnings.append(NO_ONE_CLICK)
    return warnings + list(leaving.notes)
