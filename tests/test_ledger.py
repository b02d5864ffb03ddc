"""The delivery ledger: hashed readers only, durable records, torn tails, damage, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.errors import LockTimeout, StateError
from crusader_mail.storage.files.ledger import FORMAT, Ledger, ledger_path, send_lock

SECRET = "ledger-secret-0123456789abcdef"
ISSUE = "2026-11-23-1a2b3c4d"


def _write_three_batches(path: Path, clock: FixedClock) -> Ledger:
    ledger = Ledger.load(path, ISSUE, SECRET)
    with ledger.writer(clock) as writer:
        for batch, outcome in enumerate(["accepted", "failed", "pending"]):
            readers = [ledger.reader_hash(f"r{batch}-{i}@example.com") for i in range(3)]
            writer.pending(batch, readers)
            if outcome == "accepted":
                writer.accepted(batch, "msg-1")
            elif outcome == "failed":
                writer.failed(batch, "HTTP 503")
    return ledger


def test_records_are_hashed_and_states_are_read_back(tmp_path: Path, clock: FixedClock) -> None:
    path = ledger_path(tmp_path, ISSUE)
    _write_three_batches(path, clock)
    text = path.read_text()
    assert "@" not in text
    assert "example.com" not in text
    header = json.loads(text.splitlines()[0])
    assert header["format"] == FORMAT
    assert header["issue"] == ISSUE
    assert header["version"] == 2

    ledger = Ledger.load(path, ISSUE, SECRET)
    assert ledger.was_accepted(ledger.reader_hash("r0-1@example.com"))
    assert ledger.was_accepted(ledger.reader_hash("R0-1@EXAMPLE.com"))  # one mailbox
    assert not ledger.was_accepted(ledger.reader_hash("r1-1@example.com"))  # failed: resend
    assert not ledger.is_in_doubt(ledger.reader_hash("r1-1@example.com"))
    assert ledger.is_in_doubt(ledger.reader_hash("r2-0@example.com"))
    assert ledger.in_doubt_batches == [2]
    assert (ledger.accepted_readers, ledger.in_doubt_readers, ledger.next_batch) == (3, 3, 3)

    with ledger.writer(clock) as writer:
        writer.release(ledger.in_doubt_batches)
    again = Ledger.load(path, ISSUE, SECRET)
    assert again.in_doubt_batches == []
    assert not again.is_in_doubt(again.reader_hash("r2-0@example.com"))


def test_a_version_1_ledger_still_knows_the_readers_it_accepted(
    tmp_path: Path, clock: FixedClock
) -> None:
    path = ledger_path(tmp_path, ISSUE)
    old = Ledger.load(path, ISSUE, SECRET)
    old.version = 1  # a send that began before ledgers hashed mailbox keys
    with old.writer(clock) as writer:
        writer.pending(0, [old.reader_hash("Carol@example.org")])
        writer.accepted(0, "msg-1")
    resumed = Ledger.load(path, ISSUE, SECRET)
    assert resumed.version == 1
    assert resumed.was_accepted(resumed.reader_hash("Carol@example.org"))  # as stored
    assert resumed.was_accepted(resumed.reader_hash("Carol@EXAMPLE.org"))
    assert not resumed.was_accepted(resumed.reader_hash("carol@example.org"))  # version 1 keys
    with resumed.writer(clock) as writer:
        writer.pending(1, [resumed.reader_hash("dan@example.org")])
    assert json.loads(path.read_text().splitlines()[0])["version"] == 1
    again = Ledger.load(path, ISSUE, SECRET)
    assert again.is_in_doubt(again.reader_hash("dan@example.org"))


def test_the_same_address_hashes_differently_in_another_ledger(tmp_path: Path) -> None:
    one = Ledger.load(tmp_path / "a.jsonl", ISSUE, SECRET)
    two = Ledger.load(tmp_path / "b.jsonl", ISSUE, SECRET)
    assert one.reader_hash("jane@example.com") != two.reader_hash("jane@example.com")


def test_a_torn_last_line_is_ignored_then_cut_before_the_next_record(
    tmp_path: Path, clock: FixedClock
) -> None:
    path = ledger_path(tmp_path, ISSUE)
    _write_three_batches(path, clock)
    with path.open("ab") as handle:
        handle.write(b'{"batch":2,"state":"accep')  # the crash came mid-write
    ledger = Ledger.load(path, ISSUE, SECRET)
    assert ledger.in_doubt_batches == [2]
    with ledger.writer(clock) as writer:
        writer.accepted(2, "msg-3")
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    assert Ledger.load(path, ISSUE, SECRET).in_doubt_batches == []


def test_a_damaged_line_in_the_middle_is_an_error_naming_the_line(
    tmp_path: Path, clock: FixedClock
) -> None:
    path = ledger_path(tmp_path, ISSUE)
    _write_three_batches(path, clock)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(StateError, match=r"\.jsonl:3: damaged ledger line"):
        Ledger.load(path, ISSUE, SECRET)
    assert path.read_bytes() == before


def test_another_secret_key_is_refused(tmp_path: Path, clock: FixedClock) -> None:
    path = ledger_path(tmp_path, ISSUE)
    _write_three_batches(path, clock)
    with pytest.raises(StateError, match="different secret_key"):
        Ledger.load(path, ISSUE, "another-secret-0123456789abcdef")


def test_a_ledger_of_another_issue_or_format_is_refused(tmp_path: Path, clock: FixedClock) -> None:
    path = ledger_path(tmp_path, ISSUE)
    _write_three_batches(path, clock)
    with pytest.raises(StateError, match="not '2026-11-30-00000000'"):
        Ledger.load(path, "2026-11-30-00000000", SECRET)
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(StateError, match="not a crusader-mail ledger"):
        Ledger.load(other, ISSUE, SECRET)


def test_the_send_lock_is_exclusive(tmp_path: Path) -> None:
    with send_lock(tmp_path), pytest.raises(LockTimeout), send_lock(tmp_path, timeout=0.1):
        pass


@pytest.mark.parametrize(
    "readers", [[], [0], [2**64 - 1], [1, 2**63, 0xDEADBEEF], list(range(2**40, 2**40 + 1000, 7))]
)
def test_a_pending_record_is_the_json_of_its_hex_hashes(
    tmp_path: Path, clock: FixedClock, readers: list[int]
) -> None:
    """The pending record is made as text at once: it must be what ``json.dumps`` makes."""
    path = ledger_path(tmp_path, ISSUE)
    ledger = Ledger.load(path, ISSUE, SECRET)
    with ledger.writer(clock) as writer:
        writer.pending(4, readers)
    record = path.read_text().splitlines()[-1]
    expected = {
        "batch": 4,
        "state": "pending",
        "at": clock.now().isoformat(),
        "readers": [f"{reader:016x}" for reader in readers],
    }
    assert record == json.dumps(expected, separators=(",", ":"), ensure_ascii=True)
    assert Ledger.load(path, ISSUE, SECRET).in_doubt_readers == len(set(readers))
