"""Importing readers from a user's CSV file (``crusader-mail subscribers import``).

:func:`read_import` reads the file (an ``email`` and an optional ``name`` column) and names
every bad row; :func:`import_readers` adds the good ones through the roster's rules, so a reader
who left is never brought back by an import.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crusader_mail.errors import ImportRejected, InvalidAddress, SubscriberError
from crusader_mail.models import Source, Status
from crusader_mail.storage.contract import AddReport, Roster
from crusader_mail.storage.rules import MAX_NAME, STAYING, clean_text, normalize_email
from crusader_mail.util.masking import mask_addresses

# --- the file ---------------------------------------------------------------------------------


@dataclass
class ImportFile:
    """A user's CSV read for import: good rows merged by address, bad rows each described."""

    rows: dict[str, str] = field(default_factory=dict)  # normalized address -> name
    bad: list[str] = field(default_factory=list)  # "line 4: j•••@example.com: reason"
    duplicates: int = 0  # rows merged into an earlier row with the same address


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
    if email in result.rows:
        result.duplicates += 1
        if name and not result.rows[email]:
            result.rows[email] = name
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
