"""Importing readers from a user's CSV file, and restoring an export
(``crusader-mail subscribers import [--restore]``).

:func:`read_import` reads a user's file (an ``email`` and an optional ``name`` column), names
every bad row and merges rows of one mailbox (the same address, or one that differs only in
case: the first spelling is kept); :func:`import_readers` adds the good ones through the
roster's rules, so a reader who left is never brought back by an import.

:func:`check_restore` checks a whole export (:mod:`crusader_mail.storage.rows`) before anything
is stored, naming every bad row; :func:`restore_rows` then streams its readers for
:meth:`Roster.restore`, which stores them as they are. An export of the consent history
(``export --history``; :func:`is_history` tells it apart) is checked by :func:`check_history`
and streamed by :func:`history_events` for :meth:`Roster.restore_history`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crusader_mail.errors import ImportRejected, InvalidAddress, SubscriberError
from crusader_mail.models import ConsentEvent, Source, Status, Subscriber
from crusader_mail.storage.contract import AddReport, Roster
from crusader_mail.storage.rows import (
    EVENT_HEADER,
    HEADER,
    AddressCheck,
    RowProblem,
    build,
    check_fields,
    parse_event,
    split_line,
)
from crusader_mail.storage.rules import (
    MAX_NAME,
    STAYING,
    clean_text,
    mailbox_key,
    normalize_email,
)
from crusader_mail.util.masking import mask_addresses, mask_email

# --- the file ---------------------------------------------------------------------------------


@dataclass
class ImportFile:
    """A user's CSV read for import: good rows merged by mailbox, bad rows each described."""

    rows: dict[str, str] = field(default_factory=dict)  # normalized address -> name
    bad: list[str] = field(default_factory=list)  # "line 4: j•••@example.com: reason"
    duplicates: int = 0  # rows merged into an earlier row with the very same address
    case_merged: int = 0  # rows merged into an earlier row whose address differs only in case
    spellings: dict[str, str] = field(default_factory=dict)  # mailbox key -> first spelling


def read_import(path: Path) -> ImportFile:
    """Read ``path``: a column ``email`` and an optional ``name`` (header case-insensitive, other
    columns ignored, a BOM tolerated, ``,`` ``;`` or tab separated). Raises
    :class:`ImportRejected` only when the file as a whole cannot be used."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportRejected(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise ImportRejected(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ImportRejected(f"{path}: cannot read: {error.strerror}") from None
    lines = text.splitlines(keepends=True)
    if not lines:
        raise ImportRejected(f"{path}: empty file, expected a header with an 'email' column")
    delimiter = _delimiter(lines[0])
    reader = csv.reader(lines, delimiter=delimiter)
    header = [name.strip().lower() for name in next(reader)]
    if "email" not in header:
        shown = ", ".join(repr(mask_addresses(name)) for name in header[:10])
        raise ImportRejected(f"{path}, line 1: no 'email' column (found {shown})")
    email_at = header.index("email")
    name_at = header.index("name") if "name" in header else None
    result = ImportFile()
    try:
        for fields in reader:
            if not any(value.strip() for value in fields):
                continue
            _import_row(result, reader.line_num, fields, email_at, name_at)
    except csv.Error as error:
        raise ImportRejected(f"{path}, line {reader.line_num}: broken CSV ({error})") from None
    return result


def _import_row(
    result: ImportFile, line_no: int, fields: list[str], email_at: int, name_at: int | None
) -> None:
    raw = fields[email_at] if email_at < len(fields) else ""
    if not raw.strip():
        result.bad.append(f"line {line_no}: no address in the email column")
        return
    try:
        email = normalize_email(raw)
    except InvalidAddress as error:
        result.bad.append(f"line {line_no}: {error}")
        return
    name = (
        clean_text(fields[name_at], MAX_NAME)
        if name_at is not None and name_at < len(fields)
        else ""
    )
    first = result.spellings.setdefault(mailbox_key(email), email)
    if first in result.rows:  # a row of this mailbox came earlier
        if first == email:
            result.duplicates += 1
        else:
            result.case_merged += 1
        if name and not result.rows[first]:
            result.rows[first] = name
        return
    result.rows[email] = name


def _delimiter(header_line: str) -> str:
    for delimiter in (",", ";", "\t"):
        names = [name.strip().strip('"').strip().lower() for name in header_line.split(delimiter)]
        if "email" in names:
            return delimiter
    return ","


# --- adding the readers -----------------------------------------------------------------------------------


def import_readers(
    roster: Roster, rows: Mapping[str, str], *, status: Status, ref: str
) -> AddReport:
    """Add each (normalized address -> name) not yet on the list with ``status``. Readers
    already there keep their status, so an unsubscribed reader is not brought back."""
    if status not in STAYING:
        raise SubscriberError(f"an import makes readers pending or active, not {status.value}")
    return roster.add_many(rows.items(), status=status, via=Source.IMPORT, ref=ref)


# --- restoring an export ----------------------------------------------------------------------


def check_restore(path: Path) -> int:
    """Check every row of the export at ``path``; how many readers it holds. Any bad row (a
    damaged field, an address not in normal form, a second row of one mailbox) raises
    :class:`ImportRejected` naming every one of them, so nothing is restored from a file
    that is not whole."""
    check = AddressCheck()
    seen: dict[str, int] = {}
    bad: list[str] = []
    for line_no, line in _export_lines(path):
        try:
            fields = split_line(line)
            check_fields(fields, check)
        except RowProblem as problem:
            bad.append(f"line {line_no}: {problem}")
            continue
        key = mailbox_key(fields[0])
        first = seen.setdefault(key, line_no)
        if first != line_no:
            bad.append(
                f"line {line_no}: {mask_email(fields[0])} is the reader of line {first} "
                "(`subscribers tidy` merges such rows in the list exported)"
            )
    if bad:
        rows = "row" if len(bad) == 1 else "rows"
        raise ImportRejected(f"{path}: {len(bad)} bad {rows}, nothing restored: " + "; ".join(bad))
    return len(seen)


def restore_rows(path: Path) -> Iterator[Subscriber]:
    """The readers of an export that :func:`check_restore` passed, streamed (a row that no
    longer passes, the file having changed since, raises :class:`ImportRejected`)."""
    check = AddressCheck()
    for line_no, line in _export_lines(path):
        try:
            fields = split_line(line)
            yield build(fields, check_fields(fields, check))
        except RowProblem as problem:
            raise ImportRejected(f"{path}, line {line_no}: {problem}") from None


def is_history(path: Path) -> bool:
    """Is ``path`` an export of the consent history (or the files store's consent log)?"""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = handle.readline().rstrip("\r\n")
            if first.startswith("# crusader-mail consent log v"):
                first = handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return False
    return first == EVENT_HEADER


def check_history(path: Path) -> int:
    """Check every row of the history export at ``path``; how many events it holds. Bad rows
    raise :class:`ImportRejected` naming every one of them: nothing is restored then."""
    check = AddressCheck()
    bad: list[str] = []
    count = 0
    for line_no, line in _export_lines(path, EVENT_HEADER):
        try:
            parse_event(line, check)
            count += 1
        except RowProblem as problem:
            bad.append(f"line {line_no}: {problem}")
    if bad:
        rows = "row" if len(bad) == 1 else "rows"
        raise ImportRejected(f"{path}: {len(bad)} bad {rows}, nothing restored: " + "; ".join(bad))
    return count


def history_events(path: Path) -> Iterator[ConsentEvent]:
    """The events of a history export that :func:`check_history` passed, streamed."""
    check = AddressCheck()
    for line_no, line in _export_lines(path, EVENT_HEADER):
        try:
            yield parse_event(line, check)
        except RowProblem as problem:
            raise ImportRejected(f"{path}, line {line_no}: {problem}") from None


def _export_lines(path: Path, header: str = HEADER) -> Iterator[tuple[int, str]]:
    """(line number, row line) of an export: the ``header`` line (after the version line,
    when the file is a list file or consent log itself), then rows; blank lines skipped."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise ImportRejected(f"{path}: no such file") from None
    except OSError as error:
        raise ImportRejected(f"{path}: cannot read: {error.strerror}") from None
    line_no = 0
    with handle:
        try:
            first = handle.readline().rstrip("\r\n")
            line_no = 1
            if first.startswith("# crusader-mail "):
                first = handle.readline().rstrip("\r\n")
                line_no = 2
            if first != header:
                raise ImportRejected(
                    f"{path}, line {line_no}: not an export of crusader-mail subscribers: the "
                    f"header is {mask_addresses(first[:100])!r}, expected {header!r}"
                )
            for raw in handle:
                line_no += 1
                line = raw.rstrip("\r\n")
                if line:
                    yield line_no, line
        except UnicodeDecodeError:
            raise ImportRejected(f"{path}, line {line_no + 1}: not UTF-8 text") from None
