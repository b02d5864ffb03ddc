"""Restoring an export of this tool (``crusader-mail subscribers import --restore``).

:func:`check_restore` checks a whole export (:mod:`crusader_mail.storage.rows`) before anything
is stored, naming every bad row; :func:`restore_rows` then streams its readers for
:meth:`Roster.restore`, which stores them as they are. An export of the consent history
(``export --history``; :func:`is_history` tells it apart) is checked by :func:`check_history`
and streamed by :func:`history_events` for :meth:`Roster.restore_history`; one of the readers'
preferences (``export --preferences``; :func:`is_preferences`) by :func:`check_preferences`
and :func:`preference_rows` for :meth:`Roster.restore_preferences`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from crusader_mail.errors import ImportRejected
from crusader_mail.models import ConsentEvent, Preferences, Subscriber
from crusader_mail.storage.rows import (
    EVENT_HEADER,
    HEADER,
    PREFERENCES_HEADER,
    AddressCheck,
    RowProblem,
    build,
    check_fields,
    parse_event,
    parse_preferences,
    split_line,
)
from crusader_mail.storage.rules import (
    mailbox_key,
)
from crusader_mail.subscriptions.imports import open_csv
from crusader_mail.util.masking import mask_addresses, mask_email

# --- the columns ------------------------------------------------------------------------------


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
    return _header(path) == EVENT_HEADER


def is_preferences(path: Path) -> bool:
    """Is ``path`` an export of the preferences (or the files store's preferences file)?"""
    return _header(path) == PREFERENCES_HEADER


def _header(path: Path) -> str | None:
    """The header line of an export (after the version line of a store's own file); ``None``
    when it cannot be read."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = handle.readline().rstrip("\r\n")
            if first.startswith("# crusader-mail "):
                first = handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None
    return first


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


def check_preferences(path: Path) -> int:
    """Check every row of the preferences export at ``path``; how many readers it holds. Bad
    rows (a damaged field, a second row of one mailbox) raise :class:`ImportRejected` naming
    every one of them: nothing is restored then."""
    seen: dict[str, int] = {}
    bad: list[str] = []
    for line_no, line in _export_lines(path, PREFERENCES_HEADER):
        try:
            key, _prefs = parse_preferences(split_line(line))
        except RowProblem as problem:
            bad.append(f"line {line_no}: {problem}")
            continue
        first = seen.setdefault(key, line_no)
        if first != line_no:
            bad.append(f"line {line_no}: {mask_email(key)} has its preferences on line {first}")
    if bad:
        rows = "row" if len(bad) == 1 else "rows"
        raise ImportRejected(f"{path}: {len(bad)} bad {rows}, nothing restored: " + "; ".join(bad))
    return len(seen)


def preference_rows(path: Path) -> Iterator[tuple[str, Preferences]]:
    """The (mailbox key, preferences) of a preferences export that :func:`check_preferences`
    passed, streamed."""
    for line_no, line in _export_lines(path, PREFERENCES_HEADER):
        try:
            yield parse_preferences(split_line(line))
        except RowProblem as problem:
            raise ImportRejected(f"{path}, line {line_no}: {problem}") from None


def _export_lines(path: Path, header: str = HEADER) -> Iterator[tuple[int, str]]:
    """(line number, row line) of an export: the ``header`` line (after the version line,
    when the file is a list file or consent log itself), then rows; blank lines skipped."""
    handle = open_csv(path)
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
