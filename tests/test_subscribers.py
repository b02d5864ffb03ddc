"""The subscriber list: file format, damage detection, atomic locked edits, status changes."""

from __future__ import annotations

import os
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.errors import InvalidAddress, StateError, SubscriberError
from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.files import FilesStore
from crusader_mail.storage.files.list_format import HEADER, MARKER
from crusader_mail.storage.files.subscribers import LIST_FILE, SubscriberList
from crusader_mail.storage.rules import normalize_email
from crusader_mail.subscriptions.forgetting import other_traces
from crusader_mail.subscriptions.imports import import_readers, read_import
from tests.support.lists import DAMAGE, row
from tests.support.locking import while_an_edit_holds

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def readers(tmp_path: Path, clock: FixedClock) -> SubscriberList:
    return SubscriberList(tmp_path / "subscribers", clock)


def write_list(readers: SubscriberList, *rows: str) -> bytes:
    readers.path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(row + "\n" for row in (MARKER, HEADER, *rows)).encode()
    readers.path.write_bytes(data)
    return data


# --- addresses --------------------------------------------------------------------------------


def test_normalize_lowercases_the_domain_and_keeps_the_local_part() -> None:
    assert normalize_email("  Jane.Doe@Example.COM ") == "Jane.Doe@example.com"


def test_normalize_encodes_international_domains_one_way() -> None:
    assert normalize_email("jane@MÜNCHEN.de") == "jane@xn--mnchen-3ya.de"
    assert normalize_email("jane@xn--mnchen-3ya.de") == "jane@xn--mnchen-3ya.de"


@pytest.mark.parametrize(
    "raw", ["", "jane", "jane@", "jane doe@example.com", "a..b@example.com", "x@host.test"]
)
def test_normalize_rejects_bad_addresses_without_echoing_them(raw: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_email(raw)
    if len(raw) > 4:
        assert raw not in str(caught.value)


def test_one_mailbox_in_any_spelling_is_one_reader(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        roster.add("Jane@Example.COM", name="Jane", via=Source.CLI)
        again = roster.add("jane@EXAMPLE.com", via=Source.CLI)
        assert again.email == "Jane@example.com"  # kept as first given
        assert len(roster) == 1
        assert roster.request("JANE@example.com", via=Source.EMAIL).status is Status.ACTIVE
    assert [s.email for s in readers.iter()] == ["Jane@example.com"]
    for spelling in ("JANE@example.COM", "jane@example.com", " Jane@EXAMPLE.com"):
        found = readers.get(spelling)
        assert found is not None
        assert (found.email, found.name) == ("Jane@example.com", "Jane")
    with readers.edit() as roster:
        left = roster.unsubscribe("jAnE@example.com", via=Source.WEB)
    assert left is not None
    assert (left.email, left.status) == ("Jane@example.com", Status.UNSUBSCRIBED)
    assert readers.counts()[Status.UNSUBSCRIBED] == 1


# --- a list of version 1 ----------------------------------------------------------------------

V1 = "# crusader-mail subscribers v1"
CAROL_ROWS = (  # version 1 order (the address itself): capitals first
    row("Carol@example.org", name="Carol", when="2026-01-01T00:00:00Z"),
    row("bob@example.org"),
    row("carol@example.org", "unsubscribed", when="2026-02-01T00:00:00Z"),
)


def write_v1(readers: SubscriberList, *rows: str) -> bytes:
    readers.path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in (V1, HEADER, *rows)).encode()
    readers.path.write_bytes(data)
    return data


def test_a_version_1_list_is_read_as_it_is(readers: SubscriberList) -> None:
    data = write_v1(readers, *CAROL_ROWS)
    assert [s.email for s in readers.iter()] == [
        "Carol@example.org",
        "bob@example.org",
        "carol@example.org",
    ]
    assert readers.counts()[Status.ACTIVE] == 2
    carol = readers.get("CAROL@example.org")  # its rows merged as the first change will
    assert carol is not None
    assert (carol.email, carol.name, carol.status) == (
        "Carol@example.org",
        "Carol",
        Status.UNSUBSCRIBED,
    )
    assert readers.path.read_bytes() == data  # reading never rewrites


def test_the_first_change_rewrites_a_version_1_list_one_reader_per_mailbox(
    readers: SubscriberList,
) -> None:
    write_v1(readers, *CAROL_ROWS, row("zed@example.org"))
    with readers.edit() as roster:
        assert len(roster) == 3
        roster.add("amy@example.org", via=Source.CLI)
    lines = readers.path.read_text().splitlines()
    assert lines[:2] == [MARKER, HEADER]
    assert [line.split(",")[:3] for line in lines[2:]] == [
        ["amy@example.org", "", "active"],
        ["bob@example.org", "", "active"],
        ["Carol@example.org", "Carol", "unsubscribed"],  # left in one spelling: left
        ["zed@example.org", "", "active"],
    ]
    assert readers.tidy() is False  # in order now


def test_tidy_migrates_a_version_1_list(readers: SubscriberList) -> None:
    write_v1(readers, *CAROL_ROWS)
    assert readers.tidy() is True
    assert readers.path.read_text().splitlines()[0] == MARKER
    assert [s.email for s in readers.iter()] == ["bob@example.org", "Carol@example.org"]


# --- the file ---------------------------------------------------------------------------------


def test_round_trip_keeps_every_field(readers: SubscriberList, clock: FixedClock) -> None:
    with readers.edit() as roster:
        made = [
            roster.add("b@example.com", name='Bo "The Boss", Jr.', via=Source.CLI, ref="r,1"),
            roster.request("a@example.org", name="Ann", via=Source.EMAIL, ref="<m1@x>"),
        ]
        clock.advance(timedelta(minutes=5))
        made.append(roster.unsubscribe("b@example.com", via=Source.WEB, ref="req-7"))  # type: ignore[arg-type]
    loaded = {s.email: s for s in readers.iter()}
    assert loaded == {"a@example.org": made[1], "b@example.com": made[2]}
    assert loaded["b@example.com"].name == 'Bo "The Boss", Jr.'
    assert loaded["b@example.com"].left_at == T0 + timedelta(minutes=5)
    assert loaded["b@example.com"].subscribed_at == T0


def test_file_is_marked_versioned_and_sorted(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        for email in ["zed@example.com", "amy@example.com", "Max@example.com", "bob@example.net"]:
            roster.add(email, via=Source.CLI)
    lines = readers.path.read_text().splitlines()
    assert lines[0] == "# crusader-mail subscribers v2"
    assert lines[1] == HEADER
    emails = [line.split(",")[0] for line in lines[2:]]
    assert emails == sorted(emails, key=str.lower)  # sorted by mailbox key
    assert emails == ["amy@example.com", "bob@example.net", "Max@example.com", "zed@example.com"]
    assert lines[4] == (
        "Max@example.com,,active,2026-11-23T09:00:00Z,cli,2026-11-23T09:00:00Z,cli,,,,"
        "2026-11-23T09:00:00Z"
    )


def test_an_edit_that_changes_nothing_writes_nothing(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        roster.add("a@example.com", via=Source.CLI)
    before = os.stat(readers.path)
    with readers.edit() as roster:
        roster.add("a@example.com", via=Source.CLI)  # already there
        roster.unsubscribe("nobody@example.com", via=Source.CLI)
    after = os.stat(readers.path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_no_file_means_an_empty_list(readers: SubscriberList) -> None:
    assert list(readers.iter()) == []
    assert readers.counts() == dict.fromkeys(Status, 0)
    with readers.edit() as roster:
        assert len(roster) == 0
    assert not readers.path.exists()


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_names_the_line_and_the_file_is_never_overwritten(
    readers: SubscriberList, case: str
) -> None:
    lines, line_no, reason = DAMAGE[case]
    readers.path.parent.mkdir(parents=True)
    original = "".join(f"{line}\n" for line in lines).encode()
    readers.path.write_bytes(original)
    with pytest.raises(StateError, match=f"subscribers.csv, line {line_no}: ") as caught:
        list(readers.iter())
    assert reason in str(caught.value)
    assert "alice@" not in str(caught.value)
    with pytest.raises(StateError, match=f"line {line_no}: "), readers.edit() as roster:
        roster.add("new@example.com", via=Source.CLI)
    with pytest.raises(StateError):
        readers.counts()
    assert readers.path.read_bytes() == original
    assert sorted(p.name for p in readers.path.parent.iterdir()) == [LIST_FILE, LIST_FILE + ".lock"]


def test_out_of_order_rows_stop_a_stream_and_tidy_sorts_them(readers: SubscriberList) -> None:
    write_list(readers, row("bob@example.com"), row("amy@example.com"))
    with pytest.raises(StateError, match=r"line 4: a•••@example\.com is out of order"):
        list(readers.iter())
    assert readers.tidy() is True
    assert [s.email for s in readers.iter()] == ["amy@example.com", "bob@example.com"]
    assert readers.tidy() is False


def test_duplicate_rows_out_of_order_are_still_caught(readers: SubscriberList) -> None:
    original = write_list(
        readers, row("bob@example.com"), row("amy@example.com"), row("bob@example.com")
    )
    with pytest.raises(StateError, match=r"line 5: b•••@example\.com is already on line 3"):
        readers.tidy()
    assert readers.path.read_bytes() == original


def test_crlf_and_bom_are_read(readers: SubscriberList) -> None:
    readers.path.parent.mkdir(parents=True)
    text = "\r\n".join([MARKER, HEADER, row("a@example.com"), row("b@example.com")]) + "\r\n"
    readers.path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert [s.email for s in readers.iter()] == ["a@example.com", "b@example.com"]


def test_hand_written_offsets_are_read_as_utc(readers: SubscriberList) -> None:
    write_list(readers, row("a@example.com", when="2026-11-23T10:00:00+01:00"))
    (sub,) = readers.iter()
    assert sub.subscribed_at == T0
    assert sub.subscribed_at.tzinfo is UTC


# --- atomic, locked edits ---------------------------------------------------------------------


def test_an_exception_in_the_block_saves_nothing(readers: SubscriberList) -> None:
    original = write_list(readers, row("a@example.com"))

    def change_then_fail() -> None:
        with readers.edit() as roster:
            roster.add("b@example.com", via=Source.CLI)
            roster.forget("a@example.com")
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert readers.path.read_bytes() == original


def test_a_failed_write_keeps_the_old_file(
    readers: SubscriberList, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = write_list(readers, row("a@example.com"))

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"), readers.edit() as roster:
        roster.add("b@example.com", via=Source.CLI)
    assert readers.path.read_bytes() == original
    assert sorted(p.name for p in readers.path.parent.iterdir()) == [LIST_FILE, LIST_FILE + ".lock"]


def test_the_roster_cannot_be_changed_after_its_block(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        pass
    with pytest.raises(SubscriberError, match="roster is closed"):
        roster.add("a@example.com", via=Source.CLI)


def test_concurrent_edits_wait_for_each_other(readers: SubscriberList) -> None:

    def second(log: list[str]) -> None:
        with readers.edit() as roster:
            log.append("second enters")
            roster.add("second@example.com", via=Source.CLI)

    log = while_an_edit_holds(readers, "first@example.com", second)
    assert log == ["edit leaves", "second enters"]
    assert [s.email for s in readers.iter()] == ["first@example.com", "second@example.com"]


# --- streaming --------------------------------------------------------------------------------


def test_iter_streams_a_large_list_in_flat_memory(readers: SubscriberList) -> None:
    rows = 100_000
    readers.path.parent.mkdir(parents=True)
    with readers.path.open("w") as out:
        out.write(f"{MARKER}\n{HEADER}\n")
        for i in range(rows):
            out.write(row(f"r{i:06d}@example.com", "active" if i % 4 else "bounced") + "\n")
    size = readers.path.stat().st_size
    tracemalloc.start()
    try:
        active = sum(1 for _ in readers.iter(Status.ACTIVE))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert active == rows - rows // 4
    assert peak < size / 10  # holding the list would take more than the file's size
    assert readers.counts()[Status.BOUNCED] == rows // 4


def test_get_finds_one_reader(readers: SubscriberList) -> None:
    write_list(readers, row("a@example.com"), row("b@example.com", "pending", name="Bee"))
    found = readers.get(" b@EXAMPLE.com")
    assert found is not None
    assert (found.name, found.status) == ("Bee", Status.PENDING)
    assert readers.get("c@example.com") is None
    assert readers.get("not an address") is None


# --- status changes and the consent record ----------------------------------------------------


def test_double_opt_in_stamps_the_consent_record(
    readers: SubscriberList, clock: FixedClock
) -> None:
    with readers.edit() as roster:
        pending = roster.request(
            "jo@example.com", name="Jo\r\nBcc: x@evil.test", via=Source.EMAIL, ref="<a@m>"
        )
        assert pending.status is Status.PENDING
        assert pending.name == "Jo Bcc: x@evil.test"
        assert (pending.subscribed_at, pending.subscribed_via) == (T0, Source.EMAIL)
        assert pending.confirmed_at is None
        clock.advance(timedelta(hours=1))
        active = roster.confirm("jo@example.com", via=Source.WEB, ref="req-1")
    assert active.status is Status.ACTIVE
    assert (active.confirmed_at, active.confirmed_via) == (T0 + timedelta(hours=1), Source.WEB)
    assert active.subscribed_at == T0
    assert (active.ref, active.updated_at) == ("req-1", T0 + timedelta(hours=1))
    assert readers.get("jo@example.com") == active


def test_names_cannot_carry_formulas_or_headers(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        sub = roster.add("a@example.com", name='=HYPERLINK("http://x")', via=Source.CLI)
        other = roster.request("b@example.com", name="B\x00\u2028ob " + "x" * 300, via=Source.EMAIL)
    assert sub.name == '\'=HYPERLINK("http://x")'
    assert other.name == "B ob " + "x" * 95
    assert {s.name for s in readers.iter()} == {sub.name, other.name}


def test_leaving_and_rejoining(readers: SubscriberList, clock: FixedClock) -> None:
    with readers.edit() as roster:
        roster.add("jo@example.com", via=Source.CLI)
        clock.advance(timedelta(days=1))
        left = roster.unsubscribe("jo@example.com", via=Source.EMAIL, ref="<bye@m>")
        assert left is not None
        assert (left.status, left.left_at, left.left_via) == (
            Status.UNSUBSCRIBED,
            T0 + timedelta(days=1),
            Source.EMAIL,
        )
        clock.advance(timedelta(days=1))
        assert roster.unsubscribe("jo@example.com", via=Source.WEB) == left  # idempotent
        assert roster.request("jo@example.com", via=Source.WEB) == left  # stays left
        back = roster.confirm("jo@example.com", via=Source.EMAIL)  # until they confirm
    assert back.status is Status.ACTIVE
    assert back.subscribed_at == back.confirmed_at == T0 + timedelta(days=2)
    assert back.left_at is None
    assert [e.action.value for e in readers.history("jo@example.com")] == [
        "add",
        "unsubscribe",
        "confirm",
    ]


def test_request_leaves_an_active_reader_alone(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        active = roster.add("jo@example.com", via=Source.CLI)
        assert roster.request("jo@example.com", via=Source.EMAIL) == active
        assert roster.confirm("jo@example.com", via=Source.EMAIL) == active


def test_confirming_an_unknown_reader_fails(readers: SubscriberList) -> None:
    with readers.edit() as roster, pytest.raises(SubscriberError, match="not on the list"):
        roster.confirm("who@example.com", via=Source.EMAIL)


def test_bounces_and_complaints(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        roster.add("a@example.com", via=Source.CLI)
        roster.add("u@example.com", status=Status.UNSUBSCRIBED, via=Source.CLI)
        bounced = roster.mark("a@example.com", Status.BOUNCED, via=Source.SENDGRID)
        assert bounced is not None
        assert bounced.status is Status.BOUNCED
        assert bounced.left_via is Source.SENDGRID
        complained = roster.mark("a@example.com", Status.COMPLAINED, via=Source.EMAIL)
        assert complained is not None
        assert complained.status is Status.COMPLAINED
        still = roster.mark("a@example.com", Status.BOUNCED, via=Source.SENDGRID)
        assert still is not None
        assert still.status is Status.COMPLAINED
        kept = roster.mark("u@example.com", Status.BOUNCED, via=Source.SENDGRID)
        assert kept is not None
        assert kept.status is Status.UNSUBSCRIBED
        assert roster.mark("nobody@example.com", Status.BOUNCED, via=Source.SENDGRID) is None
        with pytest.raises(SubscriberError, match="not active"):
            roster.mark("a@example.com", Status.ACTIVE, via=Source.CLI)


def test_add_never_reactivates_a_reader_who_left(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        gone = roster.add("u@example.com", status=Status.UNSUBSCRIBED, via=Source.CLI)
        assert gone.subscribed_at is None
        assert gone.left_at == T0
        again = roster.add("u@example.com", name="Una", status=Status.ACTIVE, via=Source.CLI)
    assert again.status is Status.UNSUBSCRIBED
    assert again.name == "Una"


def test_forget_erases_every_trace(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        roster.add("secret.person@example.com", name="Secret Person", via=Source.CLI)
        roster.add("other@example.com", via=Source.CLI)
    with readers.edit() as roster:
        assert roster.forget("Secret.Person@EXAMPLE.com") is True  # any spelling
        assert roster.forget("secret.person@example.com") is False
        assert roster.get("secret.person@example.com") is None
        assert len(roster) == 1
    text = readers.path.read_text()
    assert "secret" not in text.lower()
    assert [s.email for s in readers.iter()] == ["other@example.com"]


def test_forget_a_reader_added_in_the_same_edit(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        roster.add("x@example.com", via=Source.CLI)
        assert roster.forget("x@example.com") is True
        assert len(roster) == 0
    assert list(readers.iter()) == []


def test_other_traces_name_the_ledgers_as_hashed(tmp_path: Path, clock: FixedClock) -> None:
    store = FilesStore(tmp_path / "state", tmp_path / "subscribers", clock, lambda: "x" * 32)
    traces = other_traces(store, tmp_path / "outbox")
    assert any("hashed" in trace and "ledger" in trace for trace in traces)
    assert any(str(tmp_path / "outbox") in trace for trace in traces)


def test_roster_iterates_in_order_with_changes_merged(readers: SubscriberList) -> None:
    write_list(readers, row("b@example.com"), row("d@example.com"))
    with readers.edit() as roster:
        roster.add("c@example.com", via=Source.CLI)
        roster.unsubscribe("d@example.com", via=Source.CLI)
        roster.forget("b@example.com")
        seen = [(s.email, s.status) for s in roster]
    assert seen == [("c@example.com", Status.ACTIVE), ("d@example.com", Status.UNSUBSCRIBED)]
    assert [(s.email, s.status) for s in readers.iter()] == seen


# --- import -----------------------------------------------------------------------------------


def test_read_import_tolerates_bom_case_and_other_columns(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes(
        "\ufeffId;E-Mail Opt;EMAIL;Name\n1;x;Ann@Example.com;Ann\n2;y;bob@example.com;\n"
        "3;z;ann@EXAMPLE.com;Annie\n4;w;bad@@example.com;Bad\n5;v;;Nobody\n".encode()
    )
    parsed = read_import(source)
    assert parsed.rows == {"Ann@example.com": "Ann", "bob@example.com": ""}
    assert (parsed.duplicates, parsed.case_merged) == (0, 1)
    assert parsed.bad == [
        "line 5: b•••@example.com: The part after the @-sign contains invalid characters: '@'.",
        "line 6: no address in the email column",
    ]


def test_read_import_merges_repeated_addresses(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("email,name\nann@example.com,\nANN@example.com,X\nann@EXAMPLE.com,Ann\n")
    parsed = read_import(source)
    assert parsed.rows == {"ann@example.com": "X"}  # the first spelling, the first name given
    assert (parsed.duplicates, parsed.case_merged) == (1, 1)


def test_read_import_needs_an_email_column(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("mail,name\nann@example.com,Ann\n")
    with pytest.raises(SubscriberError, match=r"people.csv, line 1: no 'email' column"):
        read_import(source)


def test_import_keeps_readers_who_left_away(readers: SubscriberList) -> None:
    with readers.edit() as roster:
        roster.add("gone@example.com", status=Status.UNSUBSCRIBED, via=Source.EMAIL)
        roster.add("here@example.com", via=Source.CLI)
    report = import_readers(
        readers,
        {"gone@example.com": "Gone", "here@example.com": "", "new@example.com": "New"},
        status=Status.ACTIVE,
        ref="list.csv",
    )
    assert (report.added, report.kept_away, report.names_filled) == (1, 1, 1)
    assert report.unchanged == {"unsubscribed": 1, "active": 1}
    statuses = {s.email: (s.status, s.subscribed_via) for s in readers.iter()}
    assert statuses == {
        "gone@example.com": (Status.UNSUBSCRIBED, None),
        "here@example.com": (Status.ACTIVE, Source.CLI),
        "new@example.com": (Status.ACTIVE, Source.IMPORT),
    }


def test_subscriber_objects_are_plain_models(readers: SubscriberList) -> None:
    write_list(readers, row("a@example.com", name="A"))
    (sub,) = readers.iter()
    assert isinstance(sub, Subscriber)
    assert sub == Subscriber.model_validate(sub.model_dump())


# --- the consent log (consent-log.csv) --------------------------------------------------------


def test_the_consent_log_is_appended_and_a_cut_append_is_skipped_then_cut_off(
    readers: SubscriberList, clock: FixedClock
) -> None:
    with readers.edit() as roster:
        roster.add("a@example.com", via=Source.CLI, ref="first")
    log = readers.log.path
    first = log.read_bytes()
    assert first.startswith(b"# crusader-mail consent log v1\nat,email,action,status,via,ref\n")
    clock.advance(timedelta(minutes=1))
    with readers.edit() as roster:
        roster.unsubscribe("a@example.com", via=Source.WEB, ref="web:1")
    assert log.read_bytes().startswith(first)  # appended: the old rows are never rewritten
    # a crash in the middle of an append leaves part of a line: it never counts
    with log.open("ab") as handle:
        handle.write(b"2026-11-23T09:02:00Z,a@example.com,confi")
    assert [e.action.value for e in readers.history("a@example.com")] == ["add", "unsubscribe"]
    with readers.edit() as roster:
        roster.add("b@example.com", via=Source.CLI)
    assert b"confi" not in log.read_bytes()
    assert [e.email for e in readers.history()] == ["a@example.com"] * 2 + ["b@example.com"]


def test_a_damaged_consent_log_is_named_and_never_overwritten(
    readers: SubscriberList, clock: FixedClock
) -> None:
    with readers.edit() as roster:
        roster.add("a@example.com", via=Source.CLI)
    log = readers.log.path
    log.write_bytes(log.read_bytes() + b"yesterday,a@example.com,add,active,cli,\n")
    with pytest.raises(StateError, match=r"consent-log\.csv, line 4: at 'yesterday' is not"):
        list(readers.history("a@example.com"))
    log.write_bytes(b"something else\n")
    with (
        pytest.raises(StateError, match=r"consent-log\.csv, line 1: not a consent log"),
        readers.edit() as roster,
    ):
        roster.add("b@example.com", via=Source.CLI)
    assert log.read_bytes() == b"something else\n"
    assert readers.get("b@example.com") is None  # the change stopped whole
