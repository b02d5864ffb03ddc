"""Atomic, locked state files.

Every file crusader-mail keeps (archive, feed cache, issue history, delivery ledgers, the
subscriber list) is written through :func:`atomic_write`: a temporary file in the same folder,
flushed and fsynced, then renamed over the old one, then the folder fsynced. A reader never
sees half a file. :func:`atomic_writer` is the streaming form of the same thing (a text handle
for a file too big to build in memory; ``discard()`` leaves the old file as it was). Writers
take :func:`locked` first, an ``fcntl`` lock on a ``.lock`` file beside the state file, so two
runs never interleave their read-modify-write.

A writer killed mid-write (``kill -9``, a lost machine) leaves its temporary file behind:
``.<name>.<8 random characters>.tmp`` beside the file, perhaps a full copy of it (every
address of the list). :func:`leftovers` finds those of one file, by that pattern only. Every
writer of a state file holds its lock while its temporary file exists, so whoever takes the
lock next knows that any such file is a dead writer's: :func:`locked` removes them once it
holds the lock (and can tell which it removed), so the next write of a file clears them.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from crusader_mail.errors import LockTimeout


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that it is either all old or all new."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with _replacing(path) as replacement:
        replacement.write(raw)


class Replacement:
    """The new version of a file, being written beside it by :func:`atomic_writer`."""

    def __init__(self, handle: BinaryIO) -> None:
        self.text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        self.discarded = False

    def discard(self) -> None:
        """Throw the new version away when the block ends: the old file stays as it was."""
        self.discarded = True


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[Replacement]:
    """Stream a new version of ``path``: write UTF-8 text to ``.text`` of the yielded
    :class:`Replacement` (a temporary file in the same folder). When the block ends normally
    it is fsynced and renamed over ``path``, as :func:`atomic_write` does; when the block
    raises, or called ``discard()``, the temporary file is removed and ``path`` is untouched."""
    with _replacing(path) as handle:
        replacement = Replacement(handle)
        yield replacement
        replacement.text.flush()
        if replacement.discarded:
            raise _Discard


class _Discard(Exception):
    """Internal: end :func:`_replacing` without renaming (not an error for the caller)."""


TEMP_SUFFIX = ".tmp"
_RANDOM_PART = re.compile(r"[a-z0-9_]{8}")  # what tempfile.mkstemp puts between prefix and suffix


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def leftovers(path: Path) -> list[Path]:
    """The temporary files of ``path``'s writers in its folder (``.<name>.XXXXXXXX.tmp``): while
    nobody holds ``path``'s lock, each is what a killed writer left."""
    prefix = _temp_prefix(path)
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return sorted(
        path.parent / name
        for name in names
        if name.startswith(prefix)
        and name.endswith(TEMP_SUFFIX)
        and _RANDOM_PART.fullmatch(name[len(prefix) : -len(TEMP_SUFFIX)])
    )


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except _Discard:
        tmp.unlink(missing_ok=True)
        return
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(
    path: Path, timeout: float = 30.0, *, removed: list[Path] | None = None
) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` (on ``path.lock``) for the duration of the block.
    Once it is held, the :func:`leftovers` of killed writers of ``path`` are removed (their
    paths appended to ``removed`` when given)."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{path}: another crusader-mail run holds the lock ({lock_path})"
                    ) from None
                time.sleep(0.05)
        try:
            gone = _remove_leftovers(path)
            if removed is not None:
                removed += gone
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _remove_leftovers(path: Path) -> list[Path]:
    """Remove what killed writers of ``path`` left (the caller holds ``path``'s lock)."""
    removed = []
    for leftover in leftovers(path):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    if removed:
        fsync_dir(path.parent)
    return removed
