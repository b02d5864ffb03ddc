"""The files store's mail queue: ``subscribers_dir/pending-mail.jsonl``.

Replies kept by a change (:meth:`ListChanges.queue_mail`) wait here until a command sends them.
The file lives beside the list because it holds addresses. It is small (replies leave it as
soon as they are sent), so every change rewrites it atomically under its own lock, which is
never held while mail is sent:

- :meth:`FileMailQueue.put` appends (called after the list was saved);
- :meth:`FileMailQueue.claim` drops mail older than :data:`MAIL_KEEP`, marks the due mails
  claimed for ``LEASE`` (other senders skip them) and lets go of the lock; when the block ends
  it takes the lock again to drop what was sent and postpone what failed (waiting
  ``2**attempts`` minutes, at most a day).

Line 1 is a header ``{"format": "crusader-mail/pending-mail", "version": 1}``; then one JSON
object per mail. A damaged file is a :class:`StateError` naming the line, never overwritten.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crusader_mail.errors import StateError
from crusader_mail.models import OutgoingMessage
from crusader_mail.storage.contract import MAIL_KEEP, QueuedMail
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.statefile import atomic_write, locked

MAIL_FILE = "pending-mail.jsonl"
FORMAT = "crusader-mail/pending-mail"
VERSION = 1
LEASE = timedelta(minutes=10)
MAX_WAIT = timedelta(days=1)


@dataclass
class _Entry:
    mail: QueuedMail
    next_at: datetime
    claimed_until: datetime | None = None


@dataclass
class FileMailBatch:
    mails: list[QueuedMail]
    sent: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)

    def done(self, mail_id: str) -> None:
        self.sent.add(mail_id)

    def failed(self, mail_id: str, error: str) -> None:
        self.errors[mail_id] = error


class FileMailQueue:
    """``folder/pending-mail.jsonl`` (see the module docstring)."""

    def __init__(self, folder: Path, now: Callable[[], datetime]) -> None:
        self.path = folder / MAIL_FILE
        self._now = now

    def put(self, messages: Iterable[OutgoingMessage]) -> None:
        new = list(messages)
        if not new:
            return
        now = self._now()
        with locked(self.path):
            entries = self._read()
            entries += [
                _Entry(QueuedMail(secrets.token_hex(8), message, now), next_at=now)
                for message in new
            ]
            self._write(entries)

    def forget(self, addresses: Iterable[str]) -> None:
        """Drop every mail to these mailboxes (any spelling): a reader was forgotten."""
        gone = {mailbox_key(address) for address in addresses}
        if not gone or not self.path.exists():
            return
        with locked(self.path):
            entries = self._read()
            kept = [e for e in entries if mailbox_key(e.mail.message.to_email) not in gone]
            if len(kept) != len(entries):
                self._write(kept)

    def waiting(self) -> int:
        return len(self._read())

    @contextmanager
    def claim(self, now: datetime, limit: int = 100) -> Iterator[FileMailBatch]:
        with locked(self.path):
            read = self._read()
            entries = [entry for entry in read if now - entry.mail.queued_at <= MAIL_KEEP]
            due = [
                entry
                for entry in entries
                if entry.next_at <= now
                and (entry.claimed_until is None or entry.claimed_until <= now)
            ][:limit]
            for entry in due:
                entry.claimed_until = now + LEASE
            if due or len(entries) != len(read):
                self._write(entries)
        batch = FileMailBatch([entry.mail for entry in due])
        try:
            yield batch
        finally:
            if due:
                self._settle(batch, {entry.mail.id for entry in due}, now)

    def _settle(self, batch: FileMailBatch, claimed: set[str], now: datetime) -> None:
        with locked(self.path):
            kept: list[_Entry] = []
            for entry in self._read():
                mail = entry.mail
                if mail.id in batch.sent or now - mail.queued_at > MAIL_KEEP:
                    continue
                if mail.id in batch.errors:
                    attempts = mail.attempts + 1
                    wait = min(MAX_WAIT, timedelta(minutes=2**attempts))
                    mail = QueuedMail(
                        mail.id, mail.message, mail.queued_at, attempts, batch.errors[mail.id]
                    )
                    entry = _Entry(mail, next_at=now + wait)
                elif mail.id in claimed:
                    entry = _Entry(mail, next_at=entry.next_at)
                kept.append(entry)
            self._write(kept)

    # -- the file ------------------------------------------------------------------------------

    def _read(self) -> list[_Entry]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise StateError(f"{self.path}: cannot read the mail queue ({error})") from None
        lines = text.splitlines()
        entries: list[_Entry] = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                raise StateError(f"{self.path}:{number}: damaged line (not JSON)") from None
            if number == 1:
                if record != {"format": FORMAT, "version": VERSION}:
                    raise StateError(f"{self.path}:1: not a crusader-mail mail queue (header)")
                continue
            entries.append(_entry(self.path, number, record))
        return entries

    def _write(self, entries: list[_Entry]) -> None:
        lines = [json.dumps({"format": FORMAT, "version": VERSION})]
        lines += [json.dumps(_record(entry), ensure_ascii=False) for entry in entries]
        atomic_write(self.path, "\n".join(lines) + "\n")


def _record(entry: _Entry) -> dict[str, Any]:
    mail = entry.mail
    return {
        "id": mail.id,
        "queued_at": mail.queued_at.isoformat(),
        "attempts": mail.attempts,
        "last_error": mail.last_error,
        "next_at": entry.next_at.isoformat(),
        "claimed_until": entry.claimed_until.isoformat() if entry.claimed_until else None,
        "message": mail.message.model_dump(mode="json"),
    }


def _entry(path: Path, number: int, record: Any) -> _Entry:
    try:
        claimed = record.get("claimed_until")
        return _Entry(
            QueuedMail(
                id=str(record["id"]),
                message=OutgoingMessage.model_validate(record["message"]),
                queued_at=datetime.fromisoformat(record["queued_at"]),
                attempts=int(record["attempts"]),
                last_error=str(record.get("last_error", "")),
            ),
            next_at=datetime.fromisoformat(record["next_at"]),
            claimed_until=datetime.fromisoformat(claimed) if claimed else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError, ValidationError):
        raise StateError(f"{path}:{number}: damaged mail record") from None
