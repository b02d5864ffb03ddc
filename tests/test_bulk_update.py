"""Streaming bulk updates of the subscriber list (``SubscriberList.update_many``) and the
suppression sync on top of them: the same bytes as the in-memory ``edit()`` path, the same lock,
damaged files left alone, nothing written when nothing changes, memory that does not grow
with the list."""

from __future__ import annotations

import os
import random
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from peers.sendgrid_server import SendGridServer

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.client import client_factory
from crusader_mail.delivery.suppressions import (
    SuppressionList,
    apply_suppressions,
    sync_suppressions,
)
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import Source, Status
from crusader_mail.storage.contract import RosterChanges
from crusader_mail.storage.files.consent_log import LOG_FILE
from crusader_mail.storage.files.list_format import HEADER, MARKER
from crusader_mail.storage.files.list_index import INDEX_DIR
from crusader_mail.storage.files.subscribers import LIST_FILE, SubscriberList
from tests.support.lists import DAMAGE, row
from tests.support.locking import while_an_edit_holds
from tests.support.sending import make_readers, make_settings, reader_address

UNSUBSCRIBES = SuppressionList("unsubscribes", ("suppression", "unsubscribes"), Status.UNSUBSCRIBED)
GROUP = SuppressionList("group", ("asm", "groups", "7", "suppressions"), Status.UNSUBSCRIBED)
BOUNCES = SuppressionList("bounces", ("suppression", "bounces"), Status.BOUNCED)
SPAM = SuppressionList("spam_reports", ("suppression", "spam_reports"), Status.COMPLAINED)
INVALID = SuppressionList("invalid_emails", ("suppression", "invalid_emails"), Status.BOUNCED)
LISTS = [GROUP, UNSUBSCRIBES, BOUNCES, SPAM, INVALID]
_STAYING = (Status.ACTIVE, Status.PENDING)


def legacy_apply(
    readers: SubscriberList, lists: list[SuppressionList], fetched: list[list[str]]
) -> dict[str, int]:
    """The oracle: how ``sync_suppressions`` applied the lists before ``update_many`` (one
    ``edit()`` holding the whole list), kept verbatim to compare the results byte for byte."""
    changed = {"unsubscribed": 0, "bounced": 0, "complained": 0}
    if not any(fetched):
        return changed
    wanted: dict[str, list[SuppressionList]] = {}
    for what, found in zip(lists, fetched, strict=True):
        for email in found:
            wanted.setdefault(email.strip().lower(), []).append(what)
    with readers.edit() as roster:
        matches = []
        for line in roster.lines():
            email = line[: line.index(",")]
            for what in wanted.get(email.lower(), ()):
                matches.append((what, email))
        for what, email in matches:
            before = roster.get(email)
            if before is None or before.status == what.status:
                continue
            if what.status == Status.UNSUBSCRIBED and before.status not in _STAYING:
                continue
            ref = f"sendgrid:{what.name}"
            if what.status == Status.UNSUBSCRIBED:
                after = roster.unsubscribe(email, via=Source.SENDGRID, ref=ref)
            else:
                after = roster.mark(email, what.status, via=Source.SENDGRID, ref=ref)
            if after is not None and after.status != before.status:
                changed[after.status.value] += 1
    return changed


def twin_lists(tmp_path: Path, clock: FixedClock, data: bytes) -> tuple[SubscriberList, ...]:
    pair = []
    for name in ("streamed", "edited"):
        readers = SubscriberList(tmp_path / name, clock)
        readers.path.parent.mkdir(parents=True)
        readers.path.write_bytes(data)
        pair.append(readers)
    return tuple(pair)


def listing(*rows: str, line_end: str = "\n", bom: bool = False) -> bytes:
    text = "".join(line + line_end for line in (MARKER, HEADER, *rows))
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


STATUSES = ["active", "pending", "unsubscribed", "bounced", "complained"]

MIXED_ROWS = [
    row("Jane.Doe@example.com", name="Jane"),
    'amy@example.com,"Doe, Amy",active,2026-01-01T00:00:00Z,cli,2026-01-01T00:00:00Z,cli,,,,'
    "2026-01-01T00:00:00Z",
    row("bob@example.com", "pending"),
    row("cleo@example.com", "complained"),
    row("dan@example.com", "bounced"),
    row("eve@example.com", when="2026-11-23T10:00:00+01:00"),
    row("fay@example.com", "unsubscribed"),
    row("gus@example.com"),
    row("hal@example.com"),
    row("zed@example.com"),
]
MIXED_LISTS = [
    ["JANE.DOE@EXAMPLE.COM", "gus@example.com"],  # group: Jane in another spelling
    ["bob@example.com", "cleo@example.com", " hal@Example.com "],
    ["bob@example.com", "dan@example.com", "stranger@elsewhere.example", "gus@example.com"],
    ["dan@example.com", "eve@example.com", "eve@example.com", "fay@example.com", "gus@example.com"],
    ["amy@example.com", "hal@example.com"],
]


def _sorted_rows() -> list[str]:
    return sorted(MIXED_ROWS, key=lambda line: line[: line.index(",")].lower())


FILES = {
    "plain": listing(*_sorted_rows()),
    "crlf and bom": listing(*_sorted_rows(), line_end="\r\n", bom=True),
    "blank lines": listing(*_sorted_rows()).replace(b"\nbob@", b"\n\n\nbob@"),
    "out of order": listing(*MIXED_ROWS),  # hand-edited: sorted in memory, as edit() does
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_suppressions_give_the_same_file_as_the_edit_path(
    tmp_path: Path, clock: FixedClock, case: str
) -> None:
    streamed, edited = twin_lists(tmp_path, clock, FILES[case])
    expected = legacy_apply(edited, LISTS, MIXED_LISTS)
    assert apply_suppressions(streamed, LISTS, MIXED_LISTS) == expected
    assert expected == {"unsubscribed": 4, "bounced": 1, "complained": 2}
    assert streamed.path.read_bytes() == edited.path.read_bytes()
    assert streamed.path.read_bytes() != FILES[case]
    assert sorted(p.name for p in streamed.path.parent.iterdir()) == [
        INDEX_DIR,  # what the writer knows of the list it wrote (never committed)
        LOG_FILE,
        f"{LOG_FILE}.lock",
        LIST_FILE,
        f"{LIST_FILE}.lock",
    ]
    # the consent history: one event per reader changed, the same by either path
    events = sorted(streamed.history(), key=lambda event: (event.email, event.action))
    assert len(events) == sum(expected.values())
    assert events == sorted(edited.history(), key=lambda event: (event.email, event.action))


@pytest.mark.parametrize("seed", range(12))
def test_random_lists_and_suppressions_agree_with_the_edit_path(
    tmp_path: Path, clock: FixedClock, seed: int
) -> None:
    rng = random.Random(seed)
    spellings: dict[str, str] = {}  # one reader per mailbox, in either spelling
    for _ in range(80):
        email = f"{rng.choice(['r', 'R'])}{rng.randrange(60)}@example.{rng.choice('ab')}"
        spellings.setdefault(email.lower(), email)
    addresses = [spellings[key] for key in sorted(spellings)]
    data = listing(*(row(email, rng.choice(STATUSES)) for email in addresses))
    pool = [*addresses, "nobody@example.a", "r1@EXAMPLE.A"]
    fetched = [[rng.choice(pool).upper() for _ in range(rng.randrange(12))] for _ in LISTS]
    streamed, edited = twin_lists(tmp_path, clock, data)
    assert apply_suppressions(streamed, LISTS, fetched) == legacy_apply(edited, LISTS, fetched)
    assert streamed.path.read_bytes() == edited.path.read_bytes()
    clock.advance(timedelta(days=7))  # the next week's sync, over the result of this one
    again = [[*found, *rng.sample(pool, 5)] for found in fetched]
    assert apply_suppressions(streamed, LISTS, again) == legacy_apply(edited, LISTS, again)
    assert streamed.path.read_bytes() == edited.path.read_bytes()


def test_nothing_changing_writes_nothing(tmp_path: Path, clock: FixedClock) -> None:
    readers = SubscriberList(tmp_path, clock)
    readers.path.write_bytes(listing(row("a@example.com", "bounced"), row("b@example.com")))
    before = readers.path.stat()
    fetched = [[], ["a@example.com", "x@example.com"], ["a@example.com"], [], []]
    assert apply_suppressions(readers, LISTS, fetched) == dict.fromkeys(
        ("unsubscribed", "bounced", "complained"), 0
    )
    report = readers.update_many(["b@example.com"], lambda roster, email: None)
    assert (report.matched, report.changed, report.written) == (1, 0, False)
    after = readers.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LIST_FILE, f"{LIST_FILE}.lock"]


def test_no_list_file_stays_no_list_file(tmp_path: Path, clock: FixedClock) -> None:
    readers = SubscriberList(tmp_path / "subscribers", clock)
    report = readers.update_many(["a@example.com"], _unsubscribe)
    assert (report.matched, report.written) == (0, False)
    assert not readers.path.exists()
    assert [p.name for p in readers.path.parent.iterdir()] == [f"{LIST_FILE}.lock"]


def _unsubscribe(roster: RosterChanges, email: str) -> None:
    roster.unsubscribe(email, via=Source.CLI, ref="bulk")


def test_wanted_addresses_match_any_spelling_unless_a_match_is_given(
    tmp_path: Path, clock: FixedClock
) -> None:
    readers = SubscriberList(tmp_path, clock)
    readers.path.write_bytes(listing(row("Ann@example.com"), row("bo@example.com")))
    report = readers.update_many([" aNN@EXAMPLE.com", "not an address"], _unsubscribe)
    assert (report.matched, report.changed, report.written) == (1, 1, True)
    status = {sub.email: sub.status for sub in readers.iter()}
    assert status == {"Ann@example.com": Status.UNSUBSCRIBED, "bo@example.com": Status.ACTIVE}
    (ann,) = (sub for sub in readers.iter() if sub.email == "Ann@example.com")
    assert (ann.left_at, ann.left_via, ann.ref) == (clock.now(), Source.CLI, "bulk")
    report = readers.update_many({"BO@EXAMPLE.COM"}, _unsubscribe, match=str.upper)
    assert (report.matched, report.changed) == (1, 1)
    assert readers.counts()[Status.UNSUBSCRIBED] == 2


def test_a_version_1_list_is_merged_by_its_first_bulk_change(
    tmp_path: Path, clock: FixedClock
) -> None:
    readers = SubscriberList(tmp_path, clock)
    old = ["# crusader-mail subscribers v1", HEADER]
    old += [row("Ann@example.com"), row("ann@example.com", "unsubscribed"), row("bo@example.com")]
    readers.path.write_text("".join(line + "\n" for line in old))
    report = readers.update_many(["bo@example.com"], _unsubscribe)
    assert (report.matched, report.changed, report.written) == (1, 1, True)
    lines = readers.path.read_text().splitlines()
    assert lines[0] == MARKER
    assert [line.split(",")[:3] for line in lines[2:]] == [
        ["Ann@example.com", "", "unsubscribed"],  # left in one spelling: left
        ["bo@example.com", "", "unsubscribed"],
    ]


def test_a_bulk_change_can_forget_but_not_touch_other_readers(
    tmp_path: Path, clock: FixedClock
) -> None:
    readers = SubscriberList(tmp_path, clock)
    original = listing(row("a@example.com"), row("b@example.com"), row("c@example.com"))
    readers.path.write_bytes(original)

    def sneaky(roster: RosterChanges, email: str) -> None:
        roster.add("intruder@example.com", via=Source.CLI)

    with pytest.raises(SubscriberError, match=r"offered b•••@example\.com and changed another"):
        readers.update_many(["b@example.com"], sneaky)
    assert readers.path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [LIST_FILE, f"{LIST_FILE}.lock"]

    def forget(roster: RosterChanges, email: str) -> None:
        roster.forget(email)

    report = readers.update_many(["b@example.com"], forget)
    assert (report.changed, report.written) == (1, True)
    assert [sub.email for sub in readers.iter()] == ["a@example.com", "c@example.com"]


LATE_DAMAGE = {
    "late bad status": (
        [MARKER, HEADER, row("a@example.com"), row("b@example.com"), row("c@example.com", "gone")],
        5,
        "status 'gone'",
    ),
    "late order": (
        [MARKER, HEADER, row("a@example.com"), row("c@example.com"), row("b@example.com", "x")],
        5,
        "status 'x'",
    ),
}


@pytest.mark.parametrize("case", sorted({**DAMAGE, **LATE_DAMAGE}))
def test_a_damaged_list_is_named_and_never_overwritten(
    tmp_path: Path, clock: FixedClock, case: str
) -> None:
    lines, line_no, reason = {**DAMAGE, **LATE_DAMAGE}[case]
    readers = SubscriberList(tmp_path, clock)
    original = "".join(f"{line}\n" for line in lines).encode()
    readers.path.write_bytes(original)
    wanted = ["a@example.com", "alice@example.com", "b@example.com", "c@example.com"]
    with pytest.raises(StateError, match=f"subscribers.csv, line {line_no}: ") as caught:
        readers.update_many(wanted, _unsubscribe)
    assert reason in str(caught.value)
    with pytest.raises(StateError, match=f"line {line_no}: "):
        apply_suppressions(readers, LISTS, [wanted, [], [], [], []])
    assert readers.path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [LIST_FILE, f"{LIST_FILE}.lock"]


def test_a_failed_rename_keeps_the_old_list(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers = SubscriberList(tmp_path, clock)
    original = listing(row("a@example.com"), row("b@example.com"))
    readers.path.write_bytes(original)

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        readers.update_many(["a@example.com"], _unsubscribe)
    assert readers.path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [LIST_FILE, f"{LIST_FILE}.lock"]


def test_a_bulk_update_waits_for_an_edit_and_sees_its_change(
    tmp_path: Path, clock: FixedClock
) -> None:
    readers = SubscriberList(tmp_path, clock)
    readers.path.write_bytes(listing(row("a@example.com")))

    def bulk(log: list[str]) -> None:
        def change(roster: RosterChanges, email: str) -> None:
            log.append(f"bulk changes {email}")
            _unsubscribe(roster, email)

        readers.update_many(["late@example.com", "a@example.com"], change)

    log = while_an_edit_holds(readers, "late@example.com", bulk)
    assert log == ["edit leaves", "bulk changes a@example.com", "bulk changes late@example.com"]
    assert readers.counts()[Status.UNSUBSCRIBED] == 2


def test_memory_grows_with_the_changes_not_the_list(tmp_path: Path, clock: FixedClock) -> None:
    readers = SubscriberList(tmp_path, clock)
    rows = 50_000
    with readers.path.open("w") as out:
        out.write(f"{MARKER}\n{HEADER}\n")
        for i in range(rows):
            out.write(row(f"r{i:06d}@example.com", "active" if i % 4 else "bounced") + "\n")
    size = readers.path.stat().st_size
    wanted = [f"R{i:06d}@EXAMPLE.COM" for i in range(0, rows, 500)]
    tracemalloc.start()
    try:
        changed = apply_suppressions(readers, LISTS, [[], [], [], wanted, []])
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert changed["complained"] == len(wanted)
    assert peak < size / 10  # holding the list would take more than the file's size
    assert readers.counts()[Status.COMPLAINED] == len(wanted)


def test_the_list_keeps_its_permissions(tmp_path: Path, clock: FixedClock) -> None:
    readers = SubscriberList(tmp_path, clock)
    readers.path.write_bytes(listing(row("a@example.com")))
    readers.path.chmod(0o600)
    readers.update_many(["a@example.com"], _unsubscribe)
    assert readers.path.stat().st_mode & 0o777 == 0o600
    assert next(readers.iter()).status is Status.UNSUBSCRIBED


def test_the_sync_streams_the_list_instead_of_loading_it(
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    readers = make_readers(settings, clock, 5)
    sendgrid_server.add_suppressions("bounces", [reader_address(1).upper()])

    def no_edit(self: SubscriberList) -> None:
        raise AssertionError("sync_suppressions loaded the whole list")

    monkeypatch.setattr(SubscriberList, "edit", no_edit)
    counts = sync_suppressions(settings, readers, clock, client_factory(settings))
    assert counts["bounced"] == 1
    bounced = [sub.email for sub in readers.iter(Status.BOUNCED)]
    assert bounced == [reader_address(1)]
