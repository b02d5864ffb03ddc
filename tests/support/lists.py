"""Rows of a subscriber list file, and damaged files with the line and message they fail on."""

from __future__ import annotations

from crusader_mail.storage.files.list_format import HEADER, MARKER


def row(email: str, status: str = "active", *, name: str = "", when: str = "") -> str:
    stamp = when or "2026-01-01T00:00:00Z"
    return f"{email},{name},{status},{stamp},cli,{stamp},cli,,,,{stamp}"


DAMAGE = {
    "no marker": ([HEADER, row("a@example.com")], 1, "not a crusader-mail subscriber list"),
    "newer version": (
        ["# crusader-mail subscribers v3", HEADER, row("a@example.com")],
        1,
        "format version '3'",
    ),
    "wrong header": ([MARKER, "email,name,status", row("a@example.com")], 2, "the header"),
    "column count": (
        [MARKER, HEADER, row("a@example.com"), "b@example.com,B,active"],
        4,
        "3 columns",
    ),
    "bad status": ([MARKER, HEADER, row("a@example.com", "gone")], 3, "status 'gone'"),
    "bad date": ([MARKER, HEADER, row("a@example.com", when="23/11/2026")], 3, "not an ISO 8601"),
    "naive date": (
        [MARKER, HEADER, row("a@example.com", when="2026-11-23T09:00:00")],
        3,
        "no timezone",
    ),
    "bad address": (
        [MARKER, HEADER, row("alice@example.com"), row("bob@@example.com")],
        4,
        "not a valid",
    ),
    "domain case": ([MARKER, HEADER, row("alice@Example.com")], 3, "write it as a•••@example.com"),
    "duplicate": (
        [MARKER, HEADER, row("alice@example.com"), row("alice@example.com")],
        4,
        "already on line 3",
    ),
    "one mailbox twice": (
        [MARKER, HEADER, row("Alice@example.com"), row("alice@example.com")],
        4,
        "the reader of line 3",
    ),
    "one spelling twice in version 1": (
        ["# crusader-mail subscribers v1", HEADER, row("A@x.org"), row("A@x.org"), row("a@x.org")],
        4,
        "already on line 3",
    ),
    "bad source": (
        [MARKER, HEADER, row("alice@example.com").replace(",cli,", ",fax,", 1)],
        3,
        "'fax'",
    ),
    "broken quote": (
        [MARKER, HEADER, 'alice@example.com,"Al,active' + ",," * 4 + ","],
        3,
        "quoting",
    ),
    "empty file": ([], 1, "an empty line"),
}
