"""``crusader-mail config check``."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console as make_console
from crusader_mail.cli.output import warn
from crusader_mail.errors import ConfigError
from crusader_mail.settings import Leaving, LoadedSettings, effective_settings

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

    Everything a send would fail on is checked now: a bad value names the key, its source and
    what is expected (exit 2); an unknown key in the config file names the nearest one. Secrets
    are masked. Then how readers can leave: by one click (ours, SendGrid's, none) and by mail
    (IMAP, Inbound Parse, none). Warnings (an unknown CRUSADER_MAIL_* variable, no one-click)
    and notes (a secret a real send still needs) go to stderr. --json prints the values typed
    (numbers, booleans, lists, null), the warnings and the notes.
    """
    loaded = app.loaded()
    rows = effective_settings(loaded)
    leaving = loaded.settings.leaving()
    ways = _warnings(leaving)
    warnings = [*loaded.warnings, *ways]
    notes = _missing_secrets(loaded)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "config_file": str(loaded.config_file) if loaded.config_file else None,
                    "settings": [{"key": k, "value": v, "source": s} for k, v, s in rows],
                    "leaving": {
                        "one_click": leaving.one_click,
                        "by_mail": leaving.by_mail,
                        "warnings": ways,
                    },
                    "warnings": warnings,
                    "notes": notes,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        console = make_console()
        table = Table(title=f"settings ({loaded.config_file or 'no config file'})")
        for column in ("key", "value", "source"):
            table.add_column(column, overflow="fold")
        for key, value, source in rows:
            table.add_row(key, shown(value), source)
        console.print(table)
        console.print("settings are valid", style="green")
        console.print(
            "readers can leave: one click: "
            + (ONE_CLICK[leaving.one_click] if leaving.one_click else "none")
            + "; by mail: "
            + (BY_MAIL[leaving.by_mail] if leaving.by_mail else "none")
        )
    for warning in ways:  # the context printed the settings' own warnings when it loaded them
        warn(warning)
    for note in notes:
        warn(note, "note")


def shown(value: Any) -> str:
    """A setting's value in the table: TOML's spelling (``true``, ``["a", "b"]``)."""
    if value in (None, [], ""):
        return "(empty)"
    if isinstance(value, bool | list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _missing_secrets(loaded: LoadedSettings) -> list[str]:
    """What a real send would still stop on: a secret that is not set (a dry run needs none)."""
    missing = []
    for require in (loaded.settings.require_api_key, loaded.settings.require_secret_key):
        try:
            require()
        except ConfigError as error:
            missing.append(f"a real send needs more: {error}")
    return missing


def _warnings(leaving: Leaving) -> list[str]:
    """What ``config check`` warns about how readers leave (the refusal's line comes first)."""
    warnings = [leaving.problem] if leaving.problem else []
    if leaving.one_click is None:
        warnings.append(NO_ONE_CLICK)
    return warnings + list(leaving.notes)
