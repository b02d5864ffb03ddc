"""Progress of the long steps (reading the feeds, sending), always on stderr.

::

    fetch_progress(clock) -> Progress       feeds read, of how many
    send_progress(clock) -> Progress        readers done, of how many

On a terminal (stderr is one) a rich progress bar; elsewhere (a pipe, a cron mail, the Actions
log) one line every :data:`EVERY` seconds of the clock's time, ``crusader-mail: sending:
3,000 of 10,000 readers (30%), 42 s``, and a last one with the final count when the step ends,
if it took that long.
Both follow :class:`crusader_mail.delivery.engine.SendProgress` (``start(total)``,
``advance(count)``, ``stop()``; calls come one at a time). stdout keeps only the result, so
``--json`` output stays one document.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from crusader_mail.clock import Clock
from crusader_mail.delivery.batches import SendProgress

EVERY = 5.0  # seconds between two progress lines in a log


class Bar:
    """A rich bar on stderr, for a person at a terminal."""

    def __init__(self, what: str) -> None:
        self._progress = Progress(
            TextColumn(what),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("", total=total)
        self._progress.start()

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, count)

    def stop(self) -> None:
        self._progress.stop()


class Lines:
    """A line on stderr every ``every`` seconds of ``clock`` (and one with the final count at
    the end, when a line was printed before), for a log nobody watches live."""

    def __init__(self, what: str, unit: str, clock: Clock, every: float = EVERY) -> None:
        self.what, self.unit, self.clock, self.every = what, unit, clock, every
        self.total = self.done = 0
        self.shown: int | None = None  # how many were done at the last line (None: no line yet)
        self._started = self._last = clock.now()

    def start(self, total: int) -> None:
        self.total, self.done, self.shown = total, 0, None
        self._started = self._last = self.clock.now()

    def advance(self, count: int) -> None:
        self.done += count
        now = self.clock.now()
        if (now - self._last).total_seconds() >= self.every:
            self._last = now
            self._line()

    def stop(self) -> None:
        if self.shown is not None and self.shown != self.done:
            self._line()

    def _line(self) -> None:
        elapsed = int((self.clock.now() - self._started).total_seconds())
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        click.echo(
            f"crusader-mail: {self.what}: {self.done:,} of {self.total:,} {self.unit}{share}, "
            f"{elapsed:,} s",
            err=True,
        )
        self.shown = self.done


def _shown(what: str, unit: str, clock: Clock) -> SendProgress:
    return Bar(what) if sys.stderr.isatty() else Lines(what, unit, clock)


def fetch_progress(clock: Clock) -> SendProgress:
    """Feeds read, of how many."""
    return _shown("reading feeds", "feeds", clock)


def send_progress(clock: Clock) -> SendProgress:
    """Readers done (sent, or skipped as done before), of how many."""
    return _shown("sending", "readers", clock)
