"""`crusader-mail run` (not built yet: replaced by the stage that owns it)."""

from __future__ import annotations

import click


@click.command()
def run() -> None:
    """Not built yet."""
    raise click.UsageError("'run' is not built yet")
