"""The progress bar of a send: rich, on stderr, only when stderr is a terminal and --json is off."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from crusader_mail.delivery.engine import SendProgress


class SendBar:
    """Draws :class:`~crusader_mail.delivery.engine.SendProgress` as a bar."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("sending", total=total)
        self._progress.start()

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, count)

    def stop(self) -> None:
        self._progress.stop()


def send_bar(as_json: bool) -> SendProgress | None:
    """A bar when a person watches (stderr is a terminal, no ``--json``), else nothing."""
    return SendBar() if not as_json and sys.stderr.isatty() else None
