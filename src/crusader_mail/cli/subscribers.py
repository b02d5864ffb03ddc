"""`crusader-mail subscribers` (not built yet: replaced by the stage that owns it)."""

from __future__ import annotations

import click


@click.command()
def subscribers() -> None:
    """Not built yet."""
    raise click.UsageError("'subscribers' is not built yet")
