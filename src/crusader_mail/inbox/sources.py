"""Where incoming messages come from: ``.eml`` files, mbox files, Maildir folders, IMAP.

Contract:

- :class:`RawMessage`: the bytes of one message and where it came from (``origin``, for
  reports), plus what a trusted transport already knows (SendGrid Inbound Parse's envelope and
  its SPF/DKIM verdict, in place of the message's own ``Authentication-Results``).
- :func:`read_paths` yields one RawMessage per message found under the given paths, in a stable
  order. A message over ``max_bytes`` is not read: it comes with empty ``data`` and its ``size``
  so the processor reports it in one line. An unreadable path raises :class:`InboxError`.
- :class:`ImapSource` (imaplib over TLS): ``messages()`` yields the folder's messages not yet
  handled; ``mark_handled()`` moves them to ``processed_folder`` or flags them
  ``\\Seen`` + ``CrusaderMailHandled`` so they are never handled twice.
"""

from __future__ import annotations

import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from crusader_mail.errors import InboxError
from crusader_mail.settings import ImapSettings
from crusader_mail.util.masking import mask_addresses

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
HANDLED_KEYWORD = "CrusaderMailHandled"


@dataclass(frozen=True)
class RawMessage:
    data: bytes
    origin: str
    size: int = -1  # bytes; -1: len(data)
    envelope_to: tuple[str, ...] = ()  # SMTP RCPT TO, when a trusted transport tells us
    authenticated: bool = False  # a trusted transport verified the sender (SPF/DKIM pass)
    # our receiving host delivered it (a mailbox, a file from one): its topmost
    # Authentication-Results may be ours; False where a transport gave its own verdict
    own_headers: bool = True

    def __post_init__(self) -> None:
        if self.size < 0:
            object.__setattr__(self, "size", len(self.data))


# --- files --------------------------------------------------------------------------------------


def read_paths(paths: Sequence[Path], max_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[RawMessage]:
    """Every message in ``paths``: ``.eml`` files, mbox files, Maildir folders, or folders of
    ``.eml`` files."""
    for path in paths:
        if not path.exists():
            raise InboxError(f"{path}: no such file or folder")
        if path.is_dir():
            if (path / "cur").is_dir() and (path / "new").is_dir():
                yield from _maildir(path, max_bytes)
            else:
                for child in sorted(path.iterdir()):
                    if child.is_file() and child.suffix.lower() in {".eml", ".msg", ".mbox"}:
                        yield from read_paths([child], max_bytes)
        elif _is_mbox(path):
            yield from _mbox(path, max_bytes)
        else:
            yield _read_file(path, str(path), max_bytes)


def _is_mbox(path: Path) -> bool:
    if path.suffix.lower() == ".eml":
        return False  # one message, even when it starts with an mbox "From " line
    if path.suffix.lower() == ".mbox":
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(5) == b"From "
    except OSError as error:
        raise InboxError(f"{path}: cannot read: {error.strerror}") from None


def _read_file(path: Path, origin: str, max_bytes: int) -> RawMessage:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return RawMessage(b"", origin, size=size)
        return RawMessage(path.read_bytes(), origin)
    except OSError as error:
        raise InboxError(f"{path}: cannot read: {error.strerror}") from None


def _maildir(path: Path, max_bytes: int) -> Iterator[RawMessage]:
    """Messages in ``new/`` and ``cur/`` (``tmp/`` holds deliveries in progress)."""
    try:
        files = sorted(
            child
            for sub in ("new", "cur")
            for child in (path / sub).iterdir()
            if child.is_file() and not child.name.startswith(".")
        )
    except OSError as error:
        raise InboxError(f"{path}: cannot read the Maildir: {error.strerror}") from None
    for child in files:
        yield _read_file(child, str(child), max_bytes)


def _mbox(path: Path, max_bytes: int) -> Iterator[RawMessage]:
    try:
        box = mailbox.mbox(path, factory=None, create=False)
        keys = list(box.keys())
    except (OSError, mailbox.Error) as error:
        raise InboxError(f"{path}: cannot read the mbox: {error}") from None
    try:
        for number, key in enumerate(keys, start=1):
            origin = f"{path}#{number}"
            handle = box.get_file(key)
            try:
                data = handle.read(max_bytes + 1)
                if len(data) > max_bytes:
                    size = len(data) + len(handle.read())
                    yield RawMessage(b"", origin, size=size)
                    continue
            finally:
                handle.close()
            if data.startswith(b"From "):
                data = data.split(b"\n", 1)[1] if b"\n" in data else b""
            yield RawMessage(data, origin)
    finally:
        box.close()


# --- IMAP ---------------------------------------------------------------------------------------


class ImapSource:
    """One IMAP session: ``with ImapSource(settings.imap) as source: ...``."""

    def __init__(
        self, settings: ImapSettings, max_bytes: int = MAX_MESSAGE_BYTES, timeout: float = 60.0
    ) -> None:
        if not settings.host or not settings.user or settings.password is None:
            raise InboxError(
                "imap: set imap.host, imap.user and imap.password "
                "(CRUSADER_MAIL_IMAP__PASSWORD) to read a mailbox"
            )
        self.settings = settings
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.where = f"imap {settings.host}:{settings.port}/{settings.folder}"
        self._imap: imaplib.IMAP4 | None = None
        self._uids: list[bytes] = []

    def __enter__(self) -> ImapSource:
        settings = self.settings
        host, user, password = settings.host or "", settings.user or "", settings.password
        try:
            if settings.tls:
                context = ssl.create_default_context(
                    cafile=str(settings.ca_file) if settings.ca_file else None
                )
                self._imap = imaplib.IMAP4_SSL(
                    host, settings.port, ssl_context=context, timeout=self.timeout
                )
            else:
                self._imap = imaplib.IMAP4(host, settings.port, timeout=self.timeout)
                self._imap.starttls(ssl.create_default_context())
            secret = password.get_secret_value() if password is not None else ""
            self._imap.login(user, secret)
            status, _ = self._imap.select(_quote(settings.folder))
            if status != "OK":
                raise InboxError(f"{self.where}: cannot open the folder")
        except (imaplib.IMAP4.error, OSError, ssl.SSLError) as error:
            self._close()
            raise InboxError(f"{self.where}: {_one_line(error)}") from None
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            if imap.state == "SELECTED":
                imap.close()
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            imap.shutdown()

    @property
    def imap(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise InboxError(f"{self.where}: not connected")
        return self._imap

    def messages(self) -> Iterator[RawMessage]:
        """The folder's messages that were never handled, oldest first."""
        criteria = "ALL" if self.settings.processed_folder else f"UNKEYWORD {HANDLED_KEYWORD}"
        uids = self._command("uid", "SEARCH", criteria)
        for uid in b" ".join(u for u in uids if isinstance(u, bytes)).split():
            origin = f"imap:{self.settings.folder}/{uid.decode()}"
            size = self._size(uid)
            self._uids.append(uid)
            if size > self.max_bytes:
                yield RawMessage(b"", origin, size=size)
                continue
            data = self._command("uid", "FETCH", uid.decode(), "(BODY.PEEK[])")
            body = next((part[1] for part in data if isinstance(part, tuple)), None)
            if not isinstance(body, bytes):
                raise InboxError(f"{self.where}: message {uid.decode()} came back empty")
            yield RawMessage(body, origin)

    def _size(self, uid: bytes) -> int:
        data = self._command("uid", "FETCH", uid.decode(), "(RFC822.SIZE)")
        for part in data:
            text = part[0] if isinstance(part, tuple) else part
            if isinstance(text, bytes):
                match = re.search(rb"RFC822\.SIZE (\d+)", text)
                if match:
                    return int(match.group(1))
        return 0

    def mark_handled(self) -> int:
        """Move (or flag) every message ``messages()`` yielded; returns how many."""
        uids, self._uids = self._uids, []
        if not uids:
            return 0
        uid_set = b",".join(uids).decode()
        target = self.settings.processed_folder
        if target:
            status, caps = self.imap.capability()  # the list after login may differ
            words = b" ".join(c for c in caps if isinstance(c, bytes)).decode().upper().split()
            capabilities = set(words) if status == "OK" else set()
            if "MOVE" in capabilities:
                self._command("uid", "MOVE", uid_set, _quote(target))
            else:
                self._command("uid", "COPY", uid_set, _quote(target))
                self._command("uid", "STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)")
                self.imap.expunge()
        else:
            flags = f"(\\Seen {HANDLED_KEYWORD})"
            self._command("uid", "STORE", uid_set, "+FLAGS.SILENT", flags)
        return len(uids)

    def _command(self, name: str, *args: str) -> list[object]:
        try:
            status, data = getattr(self.imap, name)(*args)
        except (imaplib.IMAP4.error, OSError, ssl.SSLError) as error:
            raise InboxError(f"{self.where}: {args[0]} failed: {_one_line(error)}") from None
        if status != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            raise InboxError(f"{self.where}: {args[0]} refused: {mask_addresses(detail[:200])}")
        return list(data)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, imaplib.IMAP4.error) and text.startswith("b'"):
        text = text[2:-1]
    return mask_addresses(" ".join(text.split())[:300])
