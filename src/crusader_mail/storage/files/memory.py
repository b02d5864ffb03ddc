"""The files store's memory: ``state_dir/inbox.json``.

Which messages and webhook events were handled, and when each address last got a
rate-limited reply. The file is committed to a public repository, so it holds keyed hashes
only (HMAC with ``secret_key``), never addresses or ids in the clear::

    {"version": 1, "messages": {hash: time}, "replies": {"kind:hash": time}, "events": {hash: time}}
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crusader_mail.errors import StateError
from crusader_mail.storage.contract import KEEP_HANDLED, REPLY_WINDOW
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.statefile import atomic_write, locked

VERSION = 1
_SECTIONS = ("messages", "replies", "events")


class FileMemory:
    """The memory as loaded from its file, changed in place until :func:`open_memory` saves it."""

    def __init__(self, secret: str, data: dict[str, dict[str, str]]) -> None:
        self._key = hashlib.sha256(b"crusader-mail inbox state\0" + secret.encode()).digest()
        self.messages = data.get("messages", {})
        self.replies = data.get("replies", {})
        self.events = data.get("events", {})

    def dump(self) -> str:
        data = {
            "version": VERSION,
            "messages": dict(sorted(self.messages.items())),
            "replies": dict(sorted(self.replies.items())),
            "events": dict(sorted(self.events.items())),
        }
        return json.dumps(data, indent=1, sort_keys=False) + "\n"

    def _hash(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def seen(self, message_key: str) -> bool:
        return self._hash("message", message_key) in self.messages

    def remember(self, message_key: str, now: datetime) -> None:
        self.messages[self._hash("message", message_key)] = _stamp(now)

    def event_seen(self, event_id: str) -> bool:
        return self._hash("event", event_id) in self.events

    def remember_event(self, event_id: str, now: datetime) -> None:
        self.events[self._hash("event", event_id)] = _stamp(now)

    def may_reply(self, kind: str, email: str, now: datetime, window: timedelta) -> bool:
        last = self.replies.get(self._reply_key(kind, email))
        return last is None or now - datetime.fromisoformat(last) >= window

    def replied(self, kind: str, email: str, now: datetime) -> None:
        self.replies[self._reply_key(kind, email)] = _stamp(now)

    def _reply_key(self, kind: str, email: str) -> str:
        return f"{kind}:{self._hash('address', mailbox_key(email))}"

    def prune(self, now: datetime) -> None:
        """Forget reply times older than ``REPLY_WINDOW``, handled ids older than
        ``KEEP_HANDLED``."""

        def fresh(section: dict[str, str], keep: timedelta) -> dict[str, str]:
            return {k: v for k, v in section.items() if now - datetime.fromisoformat(v) < keep}

        self.replies = fresh(self.replies, REPLY_WINDOW)
        self.messages = fresh(self.messages, KEEP_HANDLED)
        self.events = fresh(self.events, KEEP_HANDLED)


@contextmanager
def open_memory(path: Path, secret: str, now: Callable[[], datetime]) -> Iterator[FileMemory]:
    """Load under the lock; when the block ends without an error, prune at ``now()`` and save
    (atomically) if anything changed."""
    with locked(path):
        memory = FileMemory(secret, _load(path))
        before = memory.dump()
        yield memory
        memory.prune(now())
        after = memory.dump()
        if after != before:
            atomic_write(path, after)


def _load(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StateError(f"{path}: damaged inbox state ({error}); fix or remove it") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise StateError(f"{path}: not an inbox state file of version {VERSION}")
    sections = {k: data.get(k, {}) for k in _SECTIONS}
    for name, section in sections.items():
        if not isinstance(section, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in section.items()
        ):
            raise StateError(f"{path}: '{name}' is damaged; fix or remove the file")
    return sections


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds")
