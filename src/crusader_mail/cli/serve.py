"""`crusader-mail serve` (not built yet: replaced by the stage that owns it)."""

from __future__ import annotations

import click


@click.command()
def serve() -> None:
    """Not built yet."""
    raise click.UsageError("'serve' is not built yet")
