"""The subscriber list file format, address rules, and reading an import file.

Contract (the file ``subscribers_dir/subscribers.csv``)::

    # crusader-mail subscribers v1
    email,name,status,subscribed_at,subscribed_via,confirmed_at,confirmed_via,left_at,left_via,ref,updated_at
    jane@example.com,Jane Doe,active,2026-11-23T09:00:00Z,cli,2026-11-23T09:00:00Z,cli,,,,2026-11-23T09:00:00Z

- line 1 names the format and its version; line 2 is the CSV header, exactly these columns;
- one reader per line, sorted by address (plain code-point order, as ``LC_ALL=C sort``), so a
  change is a one-line diff in git; UTF-8, ``\\n`` line ends (``\\r\\n`` and a BOM are accepted);
- ``email`` is in normal form (:func:`normalize_email`): never quoted, never twice;
- times are ISO 8601 UTC (``...Z``), empty when unknown; ``*_via`` is a :class:`Source` value.

:func:`scan` streams and checks a list file row by row in constant memory. Anything wrong
raises :class:`StateError` naming the file and the line (addresses masked); the caller never
overwrites a file that did not scan. :func:`read_import` reads a user's CSV (``email`` and an
optional ``name`` column) and names every bad row.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from crusader_mail.errors import ImportRejected, InvalidAddress, StateError
from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.util.masking import mask_addresses, mask_email

FORMAT_VERSION = 1
MARKER_PREFIX = "# crusader-mail subscribers v"
MARKER = f"{MARKER_PREFIX}{FORMAT_VERSION}"
COLUMNS = (
    "email",
    "name",
    "status",
    "subscribed_at",
    "subscribed_via",
    "confirmed_at",
    "confirmed_via",
    "left_at",
    "left_via",
    "ref",
    "updated_at",
)
HEADER = ",".join(COLUMNS)
_TIME_COLUMNS = (3, 5, 7, 10)
_VIA_COLUMNS = (4, 6, 8)
_STATUSES = {status.value: status for status in Status}
_SOURCES = {source.value: source for source in Source}
MAX_NAME = 100
MAX_REF = 200

# --- addresses --------------------------------------------------------------------------------


def normalize_email(raw: str) -> str:
    """The one form an address is stored and compared in; :class:`InvalidAddress` if it is none.

    Validated by email-validator without DNS. The local part is kept as given (it may be
    case-sensitive); the domain is lowercased and IDNA-encoded (``jane@MÜNCHEN.de`` and
    ``jane@xn--mnchen-3ya.de`` are one reader). Surrounding whitespace is ignored.
    """
    text = raw.strip()
    if not text:
        raise InvalidAddress("empty address")
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(f"{mask_email(text)}: {mask_addresses(str(error))}") from None
    return f"{info.local_part}@{info.ascii_domain}"


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ASCII_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")


class AddressCheck:
    """Is a stored address in normal form? Plain ASCII local parts take a fast path that asks
    email-validator once per domain; anything else is validated whole."""

    def __init__(self) -> None:
        self._domains: dict[str, bool] = {}

    def is_normal(self, address: str) -> bool:
        local, at, domain = address.rpartition("@")
        if (
            at
            and address.isascii()
            and len(local) <= 64
            and len(address) <= 254
            and _ASCII_LOCAL.match(local)
        ):
            known = self._domains.get(domain)
            if known is None:
                known = _normal_or_none(f"a@{domain}") == f"a@{domain}"
                if len(self._domains) < 100_000:
                    self._domains[domain] = known
            return known
        return _normal_or_none(address) == address


def _normal_or_none(address: str) -> str | None:
    try:
        return normalize_email(address)
    except InvalidAddress:
        return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(value: str, limit: int) -> str:
    """One line of plain text: control characters dropped, whitespace collapsed, at most
    ``limit`` characters (names come from mail headers: no header injection through them).
    A leading ``= + - @`` gets a ``'`` so a spreadsheet opening an export runs no formula."""
    text = " ".join(_CONTROL.sub(" ", value).split())[:limit].strip()
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# --- writing ----------------------------------------------------------------------------------


def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    if any(char in value for char in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def format_row(sub: Subscriber) -> str:
    """One line of the list file (without its line end)."""
    return ",".join(
        (
            sub.email,
            _quote(sub.name),
            sub.status.value,
            format_time(sub.subscribed_at),
            sub.subscribed_via.value if sub.subscribed_via else "",
            format_time(sub.confirmed_at),
            sub.confirmed_via.value if sub.confirmed_via else "",
            format_time(sub.left_at),
            sub.left_via.value if sub.left_via else "",
            _quote(sub.ref),
            format_time(sub.updated_at),
        )
    )


def render(lines: Iterable[str]) -> bytes:
    """The whole file, encoded, from row lines already in order (one join, one encode)."""
    text = "\n".join(chain((MARKER, HEADER), lines)) + "\n"
    return text.encode("utf-8")


def file_head() -> str:
    """The first two lines of a list file (a streaming writer then writes ``row + "\\n"``
    for each row: the same bytes as :func:`render`)."""
    return f"{MARKER}\n{HEADER}\n"


def row_email(line: str) -> str:
    """The address of a row line (the first field, never quoted)."""
    return line[: line.index(",")]


# --- reading ----------------------------------------------------------------------------------

Row = tuple[int, str, list[str], Status]  # line number, line text, fields, status


def scan(path: Path, *, ordered: bool = True) -> Iterator[Row]:
    """Stream the rows of a list file, each checked; nothing when the file does not exist.

    With ``ordered`` (the default) a row out of order or seen twice is an error; without it the
    caller sorts and checks for duplicates itself (``edit`` tidies a hand-edited file).
    """
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        return
    with handle:
        line_no = 0
        try:
            line_no = 1
            _check_marker(path, handle.readline())
            line_no = 2
            header = handle.readline().rstrip("\r\n")
            if header != HEADER:
                raise StateError(
                    f"{path}, line 2: the header is {header[:200]!r}, expected {HEADER!r}"
                )
            check = AddressCheck()
            previous, previous_no = "", 0
            for raw in handle:
                line_no += 1
                line = raw.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split(",") if '"' not in line else _split_quoted(line, path, line_no)
                status = _check_fields(fields, path, line_no, check)
                email = fields[0]
                if ordered:
                    if email <= previous:
                        raise StateError(
                            _order_problem(path, line_no, email, previous, previous_no)
                        )
                    previous, previous_no = email, line_no
                yield line_no, line, fields, status
        except UnicodeDecodeError:
            raise StateError(f"{path}, line {line_no}: not UTF-8 text") from None


def _check_marker(path: Path, first: str) -> None:
    first = first.rstrip("\r\n")
    if not first.startswith(MARKER_PREFIX):
        shown = repr(first[:80]) if first else "an empty line"
        raise StateError(
            f"{path}, line 1: not a crusader-mail subscriber list: found {shown}, expected {MARKER!r}"
        )
    version = first[len(MARKER_PREFIX) :].strip()
    if version != str(FORMAT_VERSION):
        raise StateError(
            f"{path}, line 1: format version {version!r} is not one this crusader-mail reads "
            f"(it reads v{FORMAT_VERSION})"
        )


def _split_quoted(line: str, path: Path, line_no: int) -> list[str]:
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as error:
        raise StateError(f"{path}, line {line_no}: broken CSV quoting ({error})") from None


def _check_fields(fields: list[str], path: Path, line_no: int, check: AddressCheck) -> Status:
    if len(fields) != len(COLUMNS):
        raise StateError(
            f"{path}, line {line_no}: {len(fields)} columns, expected {len(COLUMNS)} ({HEADER})"
        )
    status = _STATUSES.get(fields[2])
    if status is None:
        raise StateError(
            f"{path}, line {line_no}: status {fields[2][:40]!r} is not one of "
            + ", ".join(_STATUSES)
        )
    email = fields[0]
    if not check.is_normal(email):
        raise StateError(
            f"{path}, line {line_no}: {mask_email(email)} is not a valid address in normal form"
            f"{_normal_hint(email)}"
        )
    for index in _VIA_COLUMNS:
        if fields[index] and fields[index] not in _SOURCES:
            raise StateError(
                f"{path}, line {line_no}: {COLUMNS[index]} {fields[index][:40]!r} is not one of "
                + ", ".join(_SOURCES)
            )
    for index in _TIME_COLUMNS:
        if fields[index]:
            _check_time(fields[index], COLUMNS[index], path, line_no)
    return status


def _normal_hint(email: str) -> str:
    normal = _normal_or_none(email)
    return f" (write it as {mask_email(normal)})" if normal else ""


def _check_time(text: str, column: str, path: Path, line_no: int) -> None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise StateError(
            f"{path}, line {line_no}: {column} {text[:40]!r} is not an ISO 8601 time"
        ) from None
    if value.tzinfo is None:
        raise StateError(
            f"{path}, line {line_no}: {column} {text!r} has no timezone (write UTC, ending in Z)"
        )


def _order_problem(path: Path, line_no: int, email: str, previous: str, previous_no: int) -> str:
    if email == previous:
        return f"{path}, line {line_no}: {mask_email(email)} is already on line {previous_no}"
    return (
        f"{path}, line {line_no}: {mask_email(email)} is out of order (rows are sorted by "
        f"address; `crusader-mail subscribers tidy` sorts them)"
    )


def _time(text: str) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _via(text: str) -> Source | None:
    return _SOURCES[text] if text else None


def build(fields: list[str], status: Status) -> Subscriber:
    """A :class:`Subscriber` from the fields of a row that :func:`scan` checked."""
    return Subscriber(
        email=fields[0],
        name=fields[1],
        status=status,
        subscribed_at=_time(fields[3]),
        subscribed_via=_via(fields[4]),
        confirmed_at=_time(fields[5]),
        confirmed_via=_via(fields[6]),
        left_at=_time(fields[7]),
        left_via=_via(fields[8]),
        ref=fields[9],
        updated_at=_time(fields[10]),
    )


def parse_line(line: str) -> Subscriber:
    """A :class:`Subscriber` from a row line that :func:`scan` checked."""
    fields = line.split(",") if '"' not in line else next(csv.reader([line]))
    return build(fields, _STATUSES[fields[2]])


# --- import files -----------------------------------------------------------------------------


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
