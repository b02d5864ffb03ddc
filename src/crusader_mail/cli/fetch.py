"""`crusader-mail fetch` (not built yet: replaced by the stage that owns it)."""

from __future__ import annotations

import click


@click.command()
def fetch() -> None:
    """Not built yet."""
    raise click.UsageError("'fetch' is not built yet")
