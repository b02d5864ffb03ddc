"""The delivery ledger: exactly-once sending of one issue, across crashes and re-runs.

Contract (``state_dir/ledger/<issue_id>.jsonl``, one ledger per issue; the sender owns it):

- Append-only JSON Lines, one record per line, each written with one ``write`` and ``fsync``.
  Line 1 is a header ``{"format": "crusader-mail/ledger", "version": 2, "issue", "salt",
  "key_check", "created_at"}``. Then, per batch of readers::

      {"batch": 7, "state": "pending",  "at": ..., "readers": ["9f0c…", …]}   before the request
      {"batch": 7, "state": "accepted", "at": ..., "message_id": "…"}       SendGrid said 202/200
      {"batch": 7, "state": "failed",   "at": ..., "error": "HTTP 503"}     SendGrid said no
      {"batch": 7, "state": "released", "at": ...}                          --resend-uncertain

- Readers are stored only as keyed hashes (64-bit BLAKE2b keyed with ``secret_key`` and the
  ledger's salt), never as addresses: state folders are committed to public repositories, and a
  keyed hash cannot be tested against a list of guessed addresses without the secret. The header's
  ``key_check`` detects a changed ``secret_key`` (which would make every reader look new).
- Version 2 hashes the mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`, the
  address lowercased), so every spelling of a mailbox is one reader. A version 1 ledger (an
  issue whose send began before) keeps hashing as it did, the address with its domain
  lowercased, and is appended to as version 1: the readers it accepted are still recognised,
  since a reader's stored address keeps its spelling.
- A batch recorded ``pending`` with no later outcome is *in doubt*: the process died between
  writing ``pending`` and learning (or recording) SendGrid's answer. The sender sends one batch
  at a time, so a crash leaves at most one batch in doubt.
- A torn last line (a crash in the middle of a write) is ignored on reading and cut off before
  the next append; a damaged line anywhere else is a :class:`StateError` naming the file and line,
  and the file is never rewritten.
- Writers hold ``state_dir/ledger/send.lock`` (:func:`send_lock`) for the whole send, so two
  sends never run at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.addresses import lower_domain
from crusader_mail.util.statefile import fsync_dir, locked

FORMAT = "crusader-mail/ledger"
VERSION = 2
_VERSIONS = (1, 2)
LedgerState = Literal["pending", "accepted", "failed", "released"]
_STATES = ("pending", "accepted", "failed", "released")


def ledger_dir(state_dir: Path) -> Path:
    return state_dir / "ledger"


def ledger_path(state_dir: Path, issue_id: str, *, sandbox: bool = False) -> Path:
    """Sandbox-mode sends keep their own ledger, so they never mark a real reader delivered."""
    suffix = ".sandbox.jsonl" if sandbox else ".jsonl"
    return ledger_dir(state_dir) / f"{issue_id}{suffix}"


def send_lock(state_dir: Path, timeout: float = 2.0) -> AbstractContextManager[None]:
    """Held for a whole send: a second send fails fast with :class:`LockTimeout`."""
    return locked(ledger_dir(state_dir) / "send", timeout=timeout)


def _norm(email: str, version: int) -> bytes:
    """What a ledger of ``version`` hashes for ``email``."""
    return (mailbox_key(email) if version >= 2 else lower_domain(email)).encode()


@dataclass
class _Batch:
    readers: array[int]
    state: LedgerState = "pending"


@dataclass
class Ledger:
    """What one issue's ledger says, plus appending to it (see the module docstring)."""

    path: Path
    issue_id: str
    salt: str
    _key: bytes
    _accepted: array[int] = field(default_factory=lambda: array("Q"))
    _doubt: array[int] = field(default_factory=lambda: array("Q"))
    in_doubt_batches: list[int] = field(default_factory=list)
    next_batch: int = 0
    exists: bool = False
    version: int = VERSION
    _keyed: hashlib.blake2b = field(init=False, repr=False, compare=False)  # keyed with _key

    def __post_init__(self) -> None:
        self._keyed = hashlib.blake2b(key=self._key, digest_size=8)

    # -- reading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, issue_id: str, secret_key: str) -> Ledger:
        """Read the ledger at ``path`` (an empty one when the file does not exist)."""
        if not path.exists():
            salt = secrets.token_hex(16)
            return cls(path, issue_id, salt, _derive(secret_key, salt))
        batches: dict[int, _Batch] = {}
        header: dict[str, Any] | None = None
        for number, record in _records(path):
            if header is None:
                header = _check_header(path, record, issue_id)
                continue
            _apply(path, number, record, batches)
        if header is None:  # only a header torn by a crash: nothing was ever sent
            salt = secrets.token_hex(16)
            return cls(path, issue_id, salt, _derive(secret_key, salt))
        key = _derive(secret_key, str(header["salt"]))
        if not hmac.compare_digest(_key_check(key), str(header.get("key_check", ""))):
            raise StateError(
                f"{path}: this ledger was written with a different secret_key; restore that "
                "secret_key (with another one every reader would look new and get the issue again)"
            )
        version = int(header["version"])
        ledger = cls(path, issue_id, str(header["salt"]), key, exists=True, version=version)
        ledger._index(batches)
        return ledger

    def _index(self, batches: dict[int, _Batch]) -> None:
        accepted: array[int] = array("Q")
        doubt: array[int] = array("Q")
        for number, batch in sorted(batches.items()):
            if batch.state == "accepted":
                accepted.extend(batch.readers)
            elif batch.state == "pending":
                doubt.extend(batch.readers)
                self.in_doubt_batches.append(number)
        self._accepted = array("Q", sorted(accepted))
        self._doubt = array("Q", sorted(doubt))
        self.next_batch = max(batches, default=-1) + 1

    def reader_hash(self, email: str) -> int:
        hashed = self._keyed.copy()  # the key's block hashed once, not per reader
        hashed.update(_norm(email, self.version))
        return int.from_bytes(hashed.digest(), "big")

    def was_accepted(self, reader: int) -> bool:
        return bool(self._accepted) and _contains(self._accepted, reader)

    def is_in_doubt(self, reader: int) -> bool:
        return bool(self._doubt) and _contains(self._doubt, reader)

    @property
    def accepted_readers(self) -> int:
        return len(self._accepted)

    @property
    def in_doubt_readers(self) -> int:
        return len(self._doubt)

    def release_in_doubt(self) -> None:
        """Forget (in memory) which readers are in doubt; :meth:`Writer.release` records it."""
        self._doubt = array("Q")

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def writer(self, clock: Clock) -> Iterator[Writer]:
        """Open the ledger for appending (creating it with its header when new).

        The caller holds :func:`send_lock`.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if created:
                fsync_dir(self.path.parent)
            else:
                _repair_tail(fd)
            writer = Writer(fd, clock)
            if os.fstat(fd).st_size == 0:
                writer.write(
                    {
                        "format": FORMAT,
                        "version": self.version,
                        "issue": self.issue_id,
                        "salt": self.salt,
                        "key_check": _key_check(self._key),
                        "created_at": clock.now().isoformat(),
                    }
                )
            self.exists = True
            yield writer
        finally:
            os.close(fd)


class Writer:
    """Appends ledger records, each durable (fsynced) before the call returns."""

    def __init__(self, fd: int, clock: Clock) -> None:
        self._fd = fd
        self._clock = clock

    def write(self, record: dict[str, Any]) -> None:
        self._append(json.dumps(record, separators=(",", ":"), ensure_ascii=True))

    def _append(self, text: str) -> None:
        os.write(self._fd, (text + "\n").encode("ascii"))
        os.fsync(self._fd)

    def _state(self, batch: int, state: LedgerState, **extra: Any) -> None:
        self.write({"batch": batch, "state": state, "at": self._clock.now().isoformat(), **extra})

    def pending(self, batch: int, readers: Iterable[int]) -> None:
        """The record :meth:`write` makes of the readers' 16-digit hex hashes, the list's text
        made at once: the hashes' big-endian bytes in hex, a ``","`` every 8 bytes."""
        packed = array("Q", readers)
        if not packed:
            self._state(batch, "pending", readers=[])
            return
        if sys.byteorder == "little":
            packed.byteswap()
        listed = '"' + packed.tobytes().hex(",", 8).replace(",", '","') + '"'
        record = {"batch": batch, "state": "pending", "at": self._clock.now().isoformat()}
        opened = json.dumps(record, separators=(",", ":"), ensure_ascii=True)[:-1]
        self._append(f'{opened},"readers":[{listed}]}}')

    def accepted(self, batch: int, message_id: str | None) -> None:
        self._state(batch, "accepted", message_id=message_id)

    def failed(self, batch: int, error: str) -> None:
        self._state(batch, "failed", error=error)

    def release(self, batches: Iterable[int]) -> None:
        for batch in batches:
            self._state(batch, "released")


# -- helpers -----------------------------------------------------------------------------------


def _derive(secret_key: str, salt: str) -> bytes:
    message = b"crusader-mail ledger\0" + salt.encode("ascii")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).digest()


def _key_check(key: bytes) -> str:
    return hashlib.blake2b(b"key-check", key=key, digest_size=8).hexdigest()


def _contains(values: array[int], reader: int) -> bool:
    index = bisect_left(values, reader)
    return index < len(values) and values[index] == reader


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every complete line; a torn last line is skipped."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise StateError(f"{path}: cannot read the ledger: {error.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw)
            except ValueError:
                if not raw.endswith(b"\n") and handle.read(1) == b"":
                    return  # torn by a crash mid-write: the record never happened
                raise StateError(
                    f"{path}:{number}: damaged ledger line (not JSON); the ledger is left as it is"
                ) from None
            if not isinstance(record, dict):
                raise StateError(f"{path}:{number}: damaged ledger line (not an object)")
            yield number, record


def _check_header(path: Path, record: dict[str, Any], issue_id: str) -> dict[str, Any]:
    if record.get("format") != FORMAT or not isinstance(record.get("salt"), str):
        raise StateError(f"{path}:1: not a crusader-mail ledger (no format header)")
    if record.get("version") not in _VERSIONS:
        raise StateError(f"{path}:1: ledger version {record.get('version')!r} is not supported")
    if record.get("issue") != issue_id:
        raise StateError(f"{path}:1: ledger of issue {record.get('issue')!r}, not {issue_id!r}")
    return record


def _apply(path: Path, number: int, record: dict[str, Any], batches: dict[int, _Batch]) -> None:
    batch, state = record.get("batch"), record.get("state")
    if not isinstance(batch, int) or state not in _STATES:
        raise StateError(f"{path}:{number}: damaged ledger line (no batch or state)")
    if state == "pending":
        try:
            readers = array("Q", (int(value, 16) for value in record["readers"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise StateError(f"{path}:{number}: damaged ledger line (bad readers)") from None
        batches[batch] = _Batch(readers)
        return
    if batch not in batches:
        raise StateError(f"{path}:{number}: {state} record for unknown batch {batch}")
    batches[batch].state = state


def _repair_tail(fd: int) -> None:
    """Cut a torn last line (no newline) so the next record starts on a line of its own."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    tail_start = max(0, size - 65536)
    while True:
        chunk = os.pread(fd, size - tail_start, tail_start)
        if chunk.endswith(b"\n"):
            return
        cut = chunk.rfind(b"\n")
        if cut >= 0 or tail_start == 0:
            last = chunk[cut + 1 :]
            try:
                json.loads(last)
            except ValueError:
                os.ftruncate(fd, tail_start + cut + 1)
            else:
                os.write(fd, b"\n")
            os.fsync(fd)
            return
        tail_start = max(0, tail_start - 65536)


class FileLedgerStore:
    """The files store's ledgers: ``state_dir/ledger/<issue_id>.jsonl`` (see the module docstring).

    ``secret_key`` gives the key of the readers' hashes when a ledger is read (it raises
    :class:`ConfigError` when none is set, so a dry run without secrets reads no ledger)."""

    def __init__(self, state_dir: Path, secret_key: Callable[[], str]) -> None:
        self.state_dir = state_dir
        self._secret_key = secret_key

    def path(self, issue_id: str, *, sandbox: bool = False) -> Path:
        return ledger_path(self.state_dir, issue_id, sandbox=sandbox)

    def exists(self, issue_id: str, *, sandbox: bool = False) -> bool:
        return self.path(issue_id, sandbox=sandbox).exists()

    def load(self, issue_id: str, *, sandbox: bool = False) -> Ledger:
        return Ledger.load(self.path(issue_id, sandbox=sandbox), issue_id, self._secret_key())

    def send_lock(self) -> AbstractContextManager[None]:
        return send_lock(self.state_dir)
