"""A privacy request: after the roster forgot a reader, where else their address may live."""

from __future__ import annotations

from pathlib import Path

from crusader_mail.storage.contract import Store


def other_traces(store: Store, outbox_dir: Path) -> list[str]:
    """Where else an address may live after :meth:`RosterChanges.forget`: the store's own
    places (:meth:`Store.traces`), then the dry-run output, SendGrid and the inbox."""
    return [
        *store.traces(),
        f"dry-run output ({outbox_dir}) may hold the address: delete it (each dry run rebuilds it)",
        "SendGrid keeps suppression lists and activity: remove the address there (or its API)",
        "the inbox (IMAP folder, Inbound Parse) may keep the reader's own messages: delete them",
    ]
