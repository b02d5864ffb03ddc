"""How commands print: stdout carries only the result, every diagnostic goes to stderr.

- :func:`console` is the one way commands make a rich console: text is printed as given, never
  read as markup. Feed titles, subjects, mail headers, file names and settings may hold
  ``[brackets]``; rich would take ``[/x]`` for a closing tag and crash (``MarkupError``) or
  restyle the output. Colour goes through ``style=`` instead.
- :func:`warn` prints one ``crusader-mail: warning: …`` line on stderr, so a warning is seen
  with ``--json`` too (stdout then holds exactly one JSON document).
- :func:`short_url` fits a URL in a table column by keeping what tells it apart.
"""

from __future__ import annotations

import click
from rich.console import Console


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=soft_wrap, markup=False, highlight=False)


def warn(message: str, kind: str = "warning") -> None:
    """One ``crusader-mail: warning: …`` (or ``note``) line on stderr."""
    click.echo(f"crusader-mail: {kind}: {message}", err=True)
