"""Sorting more records than memory should hold: runs sorted in memory, spilled to temporary
files, merged back in order (an external merge sort).

::

    with SortedSpool(folder, prefix) as spool:
        for record in records:
            spool.add(record)        # a tuple of str and int; compared as tuples
        for record in spool:         # every record, in order (records that compare equal in
            ...                      # the order they were added when their last item is a
                                     # sequence number)

Up to ``run`` records are held at a time; each full run is sorted and written (``marshal``) to
``folder/<prefix>XXXXXXXX.tmp``, a file created with ``tempfile.mkstemp`` and removed when the
block ends, whatever happens. Memory is one run, then one record per run while merging.
"""

from __future__ import annotations

import heapq
import marshal
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

Record = tuple[Any, ...]
T = TypeVar("T")
RUN = 100_000


class SortedSpool:
    """Records given in any order, given back sorted (see the module docstring)."""

    def __init__(self, folder: Path, prefix: str, run: int = RUN) -> None:
        self.folder = folder
        self.prefix = prefix
        self.run = run
        self.count = 0
        self._held: list[Record] = []
        self._files: list[Path] = []

    def __enter__(self) -> SortedSpool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def add(self, record: Record) -> None:
        self._held.append(record)
        self.count += 1
        if len(self._held) >= self.run:
            self._spill()

    def __iter__(self) -> Iterator[Record]:
        self._held.sort()
        if not self._files:
            yield from self._held
            return
        handles = [path.open("rb") for path in self._files]
        try:
            yield from heapq.merge(self._held, *(_records(handle) for handle in handles))
        finally:
            for handle in handles:
                handle.close()

    def close(self) -> None:
        """Remove the spilled runs."""
        self._held = []
        for path in self._files:
            path.unlink(missing_ok=True)
        self._files = []

    def _spill(self) -> None:
        self._held.sort()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=self.prefix, suffix=".tmp", dir=self.folder)
        self._files.append(Path(name))
        with os.fdopen(fd, "wb") as handle:
            for record in self._held:
                marshal.dump(record, handle)
        self._held = []


class Presorted(Generic[T]):
    """Items whose producer promises they come in the order the consumer sorts them by (for
    readers: their mailbox key, a :class:`SortedSpool` having sorted them already), so that a
    consumer may take them as they come instead of sorting them again (checking the order as
    it reads). ``items()`` gives them afresh each time it is called: they can be read again."""

    def __init__(self, items: Callable[[], Iterable[T]]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items())


class RecordWriter:
    """A new file of records (``marshal``), for :func:`read_records`."""

    def __init__(self, path: Path) -> None:
        self._handle = path.open("xb")

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._handle.close()

    def write(self, record: Record) -> None:
        marshal.dump(record, self._handle)


def read_records(path: Path) -> Iterator[Record]:
    """The records a :class:`RecordWriter` wrote to ``path``, in order."""
    with path.open("rb") as handle:
        yield from _records(handle)


def _records(handle: BinaryIO) -> Iterator[Record]:
    while True:
        try:
            # our own temporary files, written by this process: marshal runs no code
            yield marshal.load(handle)  # noqa: S302
        except EOFError:
            return
