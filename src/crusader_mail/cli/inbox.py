"""`crusader-mail inbox` (not built yet: replaced by the stage that owns it)."""

from __future__ import annotations

import click


@click.command()
def inbox() -> None:
    """Not built yet."""
    raise click.UsageError("'inbox' is not built yet")
