"""``crusader-mail merge-driver BASE OURS THEIRS``: git's merge driver for the subscriber list.

Hidden from the help: git runs it (``scripts/commit-state.sh`` configures it for the
``crusader-subscribers`` driver that ``.gitattributes`` names), the merge is
:mod:`crusader_mail.storage.files.merge`. Exit 0 merged (written over OURS), 1 not merged.
"""

from __future__ import annotations

from pathlib import Path

import click

from crusader_mail.storage.files.merge import merge_files

_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.command("merge-driver", hidden=True)
@click.argument("base", type=_FILE)
@click.argument("ours", type=_FILE)
@click.argument("theirs", type=_FILE)
def merge_driver(base: Path, ours: Path, theirs: Path) -> None:
    """Merge three versions of subscribers.csv reader by reader into OURS (git's %O %A %B)."""
    try:
        merge_files(base, ours, theirs)
    except OSError as error:
        raise click.ClickException(f"subscribers.csv: {error.strerror}: {error.filename}") from None
