"""`crusader-mail preview` (not built yet: replaced by the stage that owns it)."""

from __future__ import annotations

import click


@click.command()
def preview() -> None:
    """Not built yet."""
    raise click.UsageError("'preview' is not built yet")
