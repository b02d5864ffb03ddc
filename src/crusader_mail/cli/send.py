"""`crusader-mail send` (not built yet: replaced by the stage that owns it)."""

from __future__ import annotations

import click


@click.command()
def send() -> None:
    """Not built yet."""
    raise click.UsageError("'send' is not built yet")
