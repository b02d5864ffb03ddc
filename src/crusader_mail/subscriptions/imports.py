"""Importing readers from a user's CSV file, and restoring an export
(``crusader-mail subscribers import [--restore]``).

:func:`read_import` reads a user's file: a plain list (``email``, optional ``name``) or the
subscriber export of Mailchimp, Substack, Buttondown, listmonk or Ghost. It finds the address
column (``email``, ``Email Address``, ``E-mail``, ``email_address``), the name (``name``, or
``First Name`` + ``Last Name``) and the columns that say a reader left (:data:`LEFT_COLUMNS`),
and says which it used (:meth:`Columns.describe`). It names every bad row and merges rows of one
mailbox (the same address, or one that differs only in case: the first spelling is kept; a
reader who left in any row stays left).

Rows the export marks as left (Mailchimp's unsubscribed and cleaned files, Substack's
``email_disabled``, Buttondown's and listmonk's unsubscribed or blocklisted, Ghost's
``subscribed_to_emails = false``) never become active readers: :func:`record_left` stores them
as left (unsubscribed, bounced or complained, without their name), so no later import or
``subscribers add`` brings them back, and a reader on the list as active or pending leaves.
Rows that are neither subscribed nor left (not yet confirmed, disabled by the editor, a
deletion request) are skipped and counted. :func:`import_readers` adds the others through the
roster's rules, so a reader who left is never brought back by an import.

Restoring this tool's own export (``import --restore``) is :mod:`.restore`.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import TextIO

from crusader_mail.errors import ImportRejected, InvalidAddress, SubscriberError
from crusader_mail.models import Source, Status
from crusader_mail.storage.contract import AddReport, Roster
from crusader_mail.storage.rows import (
    AddressCheck,
)
from crusader_mail.storage.rules import (
    LEFT,
    MAX_NAME,
    STAYING,
    clean_text,
    mailbox_key,
)
from crusader_mail.util.masking import mask_addresses
from crusader_mail.util.spool import RUN, Presorted, RecordWriter, SortedSpool, read_records

# --- the columns ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # a status column repeats a few words on every row
def _key(text: str) -> str:
    """A header or status word compared loosely: ``Email Address``, ``email_address`` and
    ``E-mail address`` are one; ``past_due`` is ``Past due``."""
    return re.sub(r"[^a-z0-9]", "", text.strip().strip('"').lower())


EMAIL_COLUMNS = ("email", "emailaddress")  # E-mail, EMAIL, Email Address, email_address
NAME_COLUMNS = ("name", "fullname", "displayname")
NAME_PARTS = (("firstname", "lastname"), ("fname", "lname"), ("givenname", "familyname"))


@dataclass(frozen=True)
class Verdict:
    """What a row's status columns say: a reader (the default), one who left (``left``), or
    neither (``skip``: why, e.g. ``status 'unconfirmed'``)."""

    left: Status | None = None
    skip: str = ""


READER = Verdict()
_TRUE = frozenset({"true", "yes", "1", "y", "t"})
_FALSE = frozenset({"false", "no", "0", "n", "f"})
# status words (after _key) of the tools' exports; any other word is skipped, never a reader
_READING = frozenset(
    {
        "active", "subscribed", "enabled", "confirmed",  # generic, listmonk
        "regular", "premium", "trialed", "unpaid", "gifted", "churning", "paused", "pastdue",
        "free", "paid",  # Buttondown's subscriber types (still mailed), a plain list's
    }
)  # fmt: skip
_LEAVING = {
    "unsubscribed": Status.UNSUBSCRIBED,
    "blocklisted": Status.UNSUBSCRIBED,  # listmonk
    "blacklisted": Status.UNSUBSCRIBED,
    "optedout": Status.UNSUBSCRIBED,
    "optout": Status.UNSUBSCRIBED,
    "cleaned": Status.BOUNCED,  # Mailchimp
    "bounced": Status.BOUNCED,
    "hardbounce": Status.BOUNCED,
    "undeliverable": Status.BOUNCED,
    "complained": Status.COMPLAINED,
    "spamcomplaint": Status.COMPLAINED,
}
_STRENGTH = (Status.COMPLAINED, Status.BOUNCED, Status.UNSUBSCRIBED)  # the strongest first
DELETION_REQUEST = "@deletion-request.substack.com"


def _when_set(status: Status) -> Callable[[str, str], Verdict]:
    """A time column filled only for readers who left (Mailchimp's ``UNSUB_TIME``)."""
    return lambda _header, value: Verdict(left=status) if value.strip() else READER


def _true_means_left(_header: str, value: str) -> Verdict:
    return Verdict(left=Status.UNSUBSCRIBED) if value.strip().lower() in _TRUE else READER


def _false_means_left(_header: str, value: str) -> Verdict:
    return Verdict(left=Status.UNSUBSCRIBED) if value.strip().lower() in _FALSE else READER


def _status_word(header: str, value: str) -> Verdict:
    word = _key(value)
    if word in _READING:
        return READER
    if word in _LEAVING:
        return Verdict(left=_LEAVING[word])
    shown = mask_addresses(" ".join(value.split())[:40])
    return Verdict(skip=f"{header} {shown!r}")


LEFT_COLUMNS: dict[str, Callable[[str, str], Verdict]] = {
    "unsubtime": _when_set(Status.UNSUBSCRIBED),  # Mailchimp: the unsubscribed export
    "cleantime": _when_set(Status.BOUNCED),  # Mailchimp: the cleaned (bounced) export
    "emaildisabled": _true_means_left,  # Substack
    "subscribedtoemails": _false_means_left,  # Ghost
    "subscribertype": _status_word,  # Buttondown
    "status": _status_word,  # listmonk (enabled, disabled, blocklisted), a plain list
}
"""The columns that tell readers from those who left, by their loose header (:func:`_key`)."""


@dataclass(frozen=True)
class StatusColumn:
    header: str  # as the file spells it
    at: int
    read: Callable[[str, str], Verdict]


@dataclass(frozen=True)
class Columns:
    """Which columns of a user's file were used, by index, with their headers as written."""

    email: int
    email_header: str
    name: tuple[int, ...] = ()  # (), (name,) or (first, last)
    name_headers: tuple[str, ...] = ()
    status: tuple[StatusColumn, ...] = ()

    def describe(self) -> str:
        """``using column 'Email Address' for the address and 'First Name' + 'Last Name' for
        the name; 'UNSUB_TIME' for who left``."""
        text = f"using column {self.email_header!r} for the address"
        if self.name_headers:
            text += " and " + " + ".join(map(repr, self.name_headers)) + " for the name"
        else:
            text += " (no name column)"
        if self.status:
            text += "; " + ", ".join(repr(s.header) for s in self.status) + " for who left"
        return text

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email_header,
            "name": list(self.name_headers),
            "status": [s.header for s in self.status],
        }

    def name_of(self, fields: list[str]) -> str:
        """The name columns joined (``clean_text`` collapses the blanks between them)."""
        return clean_text(" ".join([fields[at] for at in self.name if at < len(fields)]), MAX_NAME)

    def verdict(self, fields: list[str]) -> Verdict:
        """A reader, one who left (the strongest way any column says so), or neither."""
        found = [s.read(s.header, fields[s.at] if s.at < len(fields) else "") for s in self.status]
        if all(verdict is READER for verdict in found):
            return READER
        for status in _STRENGTH:
            if any(v.left is status for v in found):
                return Verdict(left=status)
        return next((v for v in found if v.skip), READER)


def find_columns(path: Path, header: list[str]) -> Columns:
    """The columns of ``header`` to read; :class:`ImportRejected` without an address column."""
    keys = [_key(name) for name in header]
    email_at = next((keys.index(k) for k in EMAIL_COLUMNS if k in keys), None)
    if email_at is None:
        shown = ", ".join(repr(mask_addresses(name.strip())) for name in header[:10])
        raise ImportRejected(
            f"{path}, line 1: no 'email' column (nor 'Email Address', 'E-mail'; found {shown})"
        )
    name_at: tuple[int, ...] = ()
    whole = next((keys.index(k) for k in NAME_COLUMNS if k in keys), None)
    if whole is not None:
        name_at = (whole,)
    else:
        for first, last in NAME_PARTS:
            name_at = tuple(keys.index(k) for k in (first, last) if k in keys)
            if name_at:
                break
    status = tuple(
        StatusColumn(header[at].strip(), at, LEFT_COLUMNS[key])
        for at, key in enumerate(keys)
        if key in LEFT_COLUMNS and at != email_at
    )
    return Columns(
        email=email_at,
        email_header=header[email_at].strip(),
        name=name_at,
        name_headers=tuple(header[at].strip() for at in name_at),
        status=status,
    )


# --- the file ---------------------------------------------------------------------------------

Merged = tuple[str, str, str]  # address (first spelling), name, how they left ("": a reader)


@dataclass
class ImportFile:
    """A user's CSV read for import: good rows merged by mailbox (in mailbox-key order, see
    :meth:`joining` and :meth:`leaving`), bad rows each described."""

    columns: Columns | None = None
    skipped: dict[str, int] = field(default_factory=dict)  # "status 'unconfirmed'" -> rows
    bad: list[str] = field(default_factory=list)  # "line 4: j•••@example.com: reason"
    duplicates: int = 0  # rows merged into an earlier row with the very same address
    case_merged: int = 0  # rows merged into an earlier row whose address differs only in case
    readers: int = 0  # mailboxes to add
    leavers: int = 0  # mailboxes the file marks as left
    held: tuple[list[Merged], list[Merged]] = field(default_factory=lambda: ([], []))
    # ^ (joining, leaving) held here, or...
    files: tuple[Path, Path] | None = None  # ...in these files (marshal records): a big file

    def _merged(self, leaving: bool) -> Iterator[Merged]:
        if self.files is None:
            yield from self.held[leaving]
        else:
            yield from read_records(self.files[leaving])

    def joining(self) -> Presorted[tuple[str, str]]:
        """(address, name) of each reader to add, streamed in mailbox-key order."""
        return Presorted(lambda: ((email, name) for email, name, _left in self._merged(False)))

    def leaving(self) -> Iterator[tuple[str, Status]]:
        """(address, how they left) of each reader the file marks as left, streamed."""
        for email, _name, left in self._merged(True):
            yield email, Status(left)

    @property
    def rows(self) -> dict[str, str]:
        """Every reader to add: address -> name (held in memory: for a small file)."""
        return dict(self.joining())

    @property
    def left(self) -> dict[str, Status]:
        """Every reader the file marks as left: address -> how (held in memory)."""
        return dict(self.leaving())


def open_csv(path: Path) -> TextIO:
    """``path`` opened to read as CSV text (a BOM skipped); :class:`ImportRejected` saying why
    it cannot be read."""
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise ImportRejected(f"{path}: no such file") from None
    except OSError as error:
        raise ImportRejected(f"{path}: cannot read: {error.strerror}") from None


def read_import(path: Path, spool: Path | None = None) -> ImportFile:
    """Read ``path``: an address column and optional name and status columns (headers compared
    loosely, other columns ignored, a BOM tolerated, ``,`` ``;`` or tab separated). Raises
    :class:`ImportRejected` only when the file as a whole cannot be used.

    The file is streamed. Its rows are sorted by mailbox key to be merged: in memory without
    ``spool``, else in runs spilled into the folder ``spool`` (removed by the caller), where the
    merged readers are kept too: memory does not grow with the file then."""
    handle = open_csv(path)
    result = ImportFile()
    run = RUN if spool is not None else sys.maxsize
    line_no = 0
    with handle, SortedSpool(spool or path.parent, "rows-", run) as rows:
        try:
            first = handle.readline()
            if not first:
                raise ImportRejected(
                    f"{path}: empty file, expected a header with an 'email' column"
                )
            reader = csv.reader(chain([first], handle), delimiter=_delimiter(first))
            columns = result.columns = find_columns(path, next(reader))
            check = AddressCheck()
            for fields in reader:
                line_no = reader.line_num
                if "".join(fields).strip():  # not a blank row
                    _import_row(result, rows, check, line_no, fields, columns)
        except csv.Error as error:
            raise ImportRejected(f"{path}, line {line_no + 1}: broken CSV ({error})") from None
        except UnicodeDecodeError:
            raise ImportRejected(f"{path}, after line {line_no}: not UTF-8 text") from None
        except OSError as error:
            raise ImportRejected(f"{path}: cannot read: {error.strerror}") from None
        merged = _merge_rows(result, rows)
        if spool is None:
            for record in merged:
                result.held[bool(record[2])].append(record)
        else:
            result.files = (spool / "joining.tmp", spool / "leaving.tmp")
            with RecordWriter(result.files[0]) as joining, RecordWriter(result.files[1]) as leaving:
                for record in merged:
                    (leaving if record[2] else joining).write(record)
    return result


def _import_row(
    result: ImportFile,
    rows: SortedSpool,
    check: AddressCheck,
    line_no: int,
    fields: list[str],
    columns: Columns,
) -> None:
    raw = fields[columns.email] if columns.email < len(fields) else ""
    if not raw.strip():
        result.bad.append(f"line {line_no}: no address in the email column")
        return
    try:
        email = check.normal(raw)
    except InvalidAddress as error:
        result.bad.append(f"line {line_no}: {error}")
        return
    verdict = columns.verdict(fields)
    if email.lower().endswith(DELETION_REQUEST):
        verdict = Verdict(skip="a Substack deletion request")
    if verdict.skip:
        result.skipped[verdict.skip] = result.skipped.get(verdict.skip, 0) + 1
        return
    left = verdict.left.value if verdict.left is not None else ""
    rows.add((mailbox_key(email), line_no, email, columns.name_of(fields), left))


def _merge_rows(result: ImportFile, rows: SortedSpool) -> Iterator[Merged]:
    """The rows of each mailbox (in file order) merged into one, counting the rows merged."""
    group: list[tuple[str, str, str]] = []
    key = None
    for row_key, _line_no, email, name, left in chain(rows, [(None, 0, "", "", "")]):
        if row_key != key and group:
            yield _merged(result, group)
            group = []
        key = row_key
        group.append((email, name, left))


def _merged(result: ImportFile, group: list[tuple[str, str, str]]) -> Merged:
    """The rows of one mailbox as one reader: the first spelling is kept, and the first name
    given; a reader who left in any row stays left, the strongest way (complained, then
    bounced, then unsubscribed), without a name."""
    first, name, left = group[0]
    if len(group) > 1:
        result.duplicates += sum(1 for other, _n, _l in group[1:] if other == first)
        result.case_merged += sum(1 for other, _n, _l in group[1:] if other != first)
        leaving = [Status(how) for _e, _n, how in group if how]
        left = min(leaving, key=_STRENGTH.index).value if leaving else ""
        name = next((given for _e, given, _l in group if given), "")
    if left:
        result.leavers += 1
        return first, "", left
    result.readers += 1
    return first, name, ""


def _delimiter(header_line: str) -> str:
    for delimiter in (",", ";", "\t"):
        if any(_key(name) in EMAIL_COLUMNS for name in header_line.split(delimiter)):
            return delimiter
    return ","


# --- adding the readers -----------------------------------------------------------------------------------


def import_readers(
    roster: Roster,
    rows: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    status: Status,
    ref: str,
) -> AddReport:
    """Add each (normalized address, name) not yet on the list with ``status``. Readers
    already there keep their status, so an unsubscribed reader is not brought back."""
    if status not in STAYING:
        raise SubscriberError(f"an import makes readers pending or active, not {status.value}")
    readers = rows.items() if isinstance(rows, Mapping) else rows
    return roster.add_many(readers, status=status, via=Source.IMPORT, ref=ref)


@dataclass
class LeftReport:
    """What :func:`record_left` did, each count by status (``unsubscribed``, ``bounced``…)."""

    recorded: dict[str, int] = field(default_factory=dict)  # new on the list, as left
    now_left: dict[str, int] = field(default_factory=dict)  # were active or pending: left now
    already_left: int = 0  # had left here too: unchanged

    def as_json(self) -> dict[str, object]:
        return {
            "recorded": self.recorded,
            "now_left": self.now_left,
            "already_left": self.already_left,
        }


def record_left(
    roster: Roster, left: Mapping[str, Status] | Iterable[tuple[str, Status]], *, ref: str
) -> LeftReport:
    """Store each (normalized address, how they left) of an export as a reader who left,
    without a name, in one unit of change: new ones as left, readers on the list as active or
    pending made to leave the same way, readers who had left here too left as they are."""
    report = LeftReport()
    leaving = iter(left.items() if isinstance(left, Mapping) else left)
    first = next(leaving, None)
    if first is None:
        return report
    with roster.edit() as changes:
        for email, status in chain([first], leaving):
            old = changes.get(email)
            if old is not None and old.status in LEFT:
                report.already_left += 1
                continue
            if old is None:
                changes.add(email, status=status, via=Source.IMPORT, ref=ref)
                counts = report.recorded
            elif status is Status.UNSUBSCRIBED:
                changes.unsubscribe(email, via=Source.IMPORT, ref=ref)
                counts = report.now_left
            else:
                changes.mark(email, status, via=Source.IMPORT, ref=ref)
                counts = report.now_left
            counts[status.value] = counts.get(status.value, 0) + 1
    return report
