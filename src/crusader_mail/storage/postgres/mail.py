"""The PostgreSQL store's mail queue: the table ``mail_queue``.

A reply is inserted in the transaction of the change it answers (:func:`queue_mail`), so it is
kept exactly when the change is. :meth:`PgMailQueue.claim` drops mail older than
:data:`MAIL_KEEP`, takes the due mails with ``FOR UPDATE SKIP LOCKED`` (a sender never waits
for another) and marks them claimed for ``LEASE`` in one short transaction; no lock is held
while the mail is sent. When the block ends, a second transaction deletes what was sent and
postpones what failed (``2**attempts`` minutes, at most a day), as the files store does.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from crusader_mail.models import OutgoingMessage
from crusader_mail.storage.contract import MAIL_KEEP, QueuedMail
from crusader_mail.storage.files.mail import LEASE, MAX_WAIT, FileMailBatch
from crusader_mail.storage.postgres.connections import Connection, Database
from crusader_mail.storage.rules import mailbox_key


def queue_mail(conn: Connection, message: OutgoingMessage, now: datetime) -> None:
    """Insert ``message`` in ``conn``'s transaction, due at once."""
    conn.execute(
        "INSERT INTO mail_queue (id, mailbox, message, queued_at, next_at) "
        "VALUES (%s, %s, %s::jsonb, %s, %s)",
        (
            secrets.token_hex(8),
            mailbox_key(message.to_email),
            message.model_dump_json(),
            now,
            now,
        ),
    )


def retry_wait(attempts: int) -> timedelta:
    """How long a mail that failed ``attempts`` times waits before the next try."""
    return min(MAX_WAIT, timedelta(minutes=2**attempts))


class PgMailQueue:
    """The table ``mail_queue`` (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def waiting(self) -> int:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT count(*) FROM mail_queue").fetchone()
        return int(row[0]) if row is not None else 0

    @contextmanager
    def claim(self, now: datetime, limit: int = 100) -> Iterator[FileMailBatch]:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM mail_queue WHERE queued_at < %s", [now - MAIL_KEEP])
            rows = conn.execute(
                "SELECT id, message::text, queued_at, attempts, last_error FROM mail_queue "
                "WHERE next_at <= %s AND (claimed_until IS NULL OR claimed_until <= %s) "
                "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, now, limit),
            ).fetchall()
            mails = [
                QueuedMail(id, OutgoingMessage.model_validate_json(text), queued, tries, error)
                for id, text, queued, tries, error in rows
            ]
            conn.execute(
                "UPDATE mail_queue SET claimed_until = %s WHERE id = ANY(%s)",
                (now + LEASE, [mail.id for mail in mails]),
            )
        batch = FileMailBatch(mails)
        try:
            yield batch
        finally:
            if mails:
                self._settle(batch, now)

    def _settle(self, batch: FileMailBatch, now: datetime) -> None:
        """Drop what was sent, postpone what failed, free what the block left unmarked."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM mail_queue WHERE id = ANY(%s)", [sorted(batch.sent)])
            for mail in batch.mails:
                if mail.id in batch.sent:
                    continue
                if mail.id in batch.errors:
                    attempts = mail.attempts + 1
                    conn.execute(
                        "UPDATE mail_queue SET attempts = %s, last_error = %s, next_at = %s, "
                        "claimed_until = NULL WHERE id = %s",
                        (attempts, batch.errors[mail.id], now + retry_wait(attempts), mail.id),
                    )
                else:
                    conn.execute(
                        "UPDATE mail_queue SET claimed_until = NULL WHERE id = %s", [mail.id]
                    )
