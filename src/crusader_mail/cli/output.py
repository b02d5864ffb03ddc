"""The one way commands make a rich console: text is printed as given, never read as markup.

Feed titles, subjects, mail headers, file names and settings may hold ``[brackets]``; rich would
take ``[/x]`` for a closing tag and crash (``MarkupError``) or restyle the output. Colour goes
through ``style=`` instead.
"""

from __future__ import annotations

from rich.console import Console


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=soft_wrap, markup=False, highlight=False)
