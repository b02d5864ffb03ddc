"""The files store touches only what it changes: rows found by binary search, the new list made
by copying the bytes around the changed rows, and what a checked scan found kept beside the
list (``.subscribers-index/``) for the version a writer wrote, used only for that version (a
hand edit or a git checkout gives the list another one). Imports are sorted in spilled runs
and merged with the list as it streams."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from crusader_mail.clock import FixedClock
from crusader_mail.errors import InvalidAddress, StateError
from crusader_mail.models import Source, Status
from crusader_mail.storage.contract import RosterChanges
from crusader_mail.storage.files import list_index
from crusader_mail.storage.files import subscribers as subscribers_module
from crusader_mail.storage.files.list_file import Snapshot
from crusader_mail.storage.files.list_format import HEADER, MARKER, ListScan, render, row_key
from crusader_mail.storage.files.list_index import INDEX_DIR, IndexFolder, survey
from crusader_mail.storage.files.subscribers import LIST_FILE, SubscriberList
from crusader_mail.storage.rows import AddressCheck, format_row, parse_line
from crusader_mail.storage.rules import mailbox_key, normal_or_none
from crusader_mail.subscriptions.imports import read_import
from crusader_mail.util import spool as spool_module
from crusader_mail.util.statefile import leftovers
from crusader_mail.util.tokens import Signer
from tests.support.lists import row

SECRET = "list-index-test-secret-0123456789"


def write_list(path: Path, *rows: str) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in (MARKER, HEADER, *rows)).encode()
    path.write_bytes(data)
    return data


def awkward_rows(count: int, rng: random.Random) -> list[str]:
    """Rows sorted by mailbox key with quotes and commas in names and refs, mixed-case and
    non-ASCII addresses, and every status."""
    statuses = ["active", "active", "active", "pending", "unsubscribed", "bounced", "complained"]
    rows = {}
    for n in range(count):
        local = rng.choice(["r", "R", "reader.", "Zoë." if n % 97 == 0 else "x"]) + str(n)
        email = normal_or_none(f"{local}@example.{rng.choice(['org', 'com'])}")
        assert email is not None
        reader = parse_line(row(email, rng.choice(statuses))).model_copy(
            update={
                "name": rng.choice(["", "Ann", 'Ann "the, one"', "Smith, John", "A,B,C", "Zoë"]),
                "ref": rng.choice(["", "x,y", '<m"1"@x>']),
            }
        )
        rows[mailbox_key(email)] = format_row(reader)
    return [rows[key] for key in sorted(rows)]


# --- the binary search ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_binary_search_finds_every_row_and_every_gap_with_quotes_and_blank_lines(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    rows = awkward_rows(3000, rng)
    if seed % 2:  # a hand-written file may keep blank lines: the search steps over them
        rows = [line for item in rows for line in ([item, ""] if rng.random() < 0.05 else [item])]
    path = tmp_path / LIST_FILE
    write_list(path, *rows)
    with Snapshot.open(path) as snapshot:  # type: ignore[union-attr]
        found = survey(snapshot)
        assert found.usable
        data = path.read_bytes()
        for line in filter(None, rows):
            span = snapshot.locate(row_key(line))
            assert span.line == line
            assert data[span.start : span.end] == (line + "\n").encode()
        starts = [m.start() + 1 for m in re.finditer(b"\n", data)][1:-1]  # after the head
        for line in filter(None, rows[::50]):
            missing = row_key(line) + "!"  # sorts right after that key: no such reader
            span = snapshot.locate(missing)
            assert span.line is None
            assert span.start == span.end
            assert span.start in starts
            for start in starts:
                key = data[start : data.index(b"\n", start)].split(b",")[0].decode().lower()
                if key:
                    assert (key < missing) == (start < span.start)


def test_a_reader_is_found_and_changed_without_reading_the_list(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = awkward_rows(2000, random.Random(7))
    readers = SubscriberList(tmp_path, clock)
    write_list(readers.path, *rows)
    assert readers.counts()[Status.ACTIVE] > 0  # the one checked scan of this version

    def no_scan(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the list was scanned again")

    monkeypatch.setattr(subscribers_module, "survey", no_scan)
    monkeypatch.setattr(ListScan, "__iter__", no_scan)
    target = parse_line(rows[1234])
    assert readers.get(target.email.upper()) == target
    with readers.edit() as roster:
        left = roster.unsubscribe(target.email, via=Source.CLI, ref="test")
        new = roster.add("new.reader@example.net", name='Quote "me", please', via=Source.CLI)
    assert left is not None
    expected = sorted([*rows[:1234], *rows[1235:], format_row(left), format_row(new)], key=row_key)
    assert readers.path.read_bytes() == render(expected)
    assert readers.counts()[Status.UNSUBSCRIBED] == sum(
        1 for line in expected if ",unsubscribed," in line
    )


# --- the index follows the list ---------------------------------------------------------------


def _random_changes(roster: RosterChanges, emails: list[str], rng: random.Random) -> None:
    for _ in range(rng.randrange(1, 6)):
        email = rng.choice(emails)
        action = rng.randrange(5)
        if action == 0:
            roster.unsubscribe(email, via=Source.EMAIL)
        elif action == 1:
            roster.forget(email)
        elif action == 2:
            roster.request(f"new{rng.randrange(10**6)}@example.net", via=Source.WEB)
        elif action == 3:
            roster.mark(email, Status.BOUNCED, via=Source.SENDGRID)
        else:
            roster.add(email.upper() if rng.random() < 0.5 else email, name="Named", via=Source.CLI)


@pytest.mark.parametrize("seed", range(6))
def test_what_the_writers_keep_is_what_a_fresh_scan_finds(
    tmp_path: Path, clock: FixedClock, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if seed % 2:  # new rows folded into the hint table after every few
        monkeypatch.setattr(list_index, "EXTRA_LIMIT", 2)
    rng = random.Random(seed)
    rows = awkward_rows(400, rng)
    readers = SubscriberList(tmp_path, clock)
    write_list(readers.path, *rows)
    signer = Signer(SECRET)
    for _ in range(15):
        emails = [s.email for s in readers.iter()] or ["nobody@example.org"]
        with readers.edit() as roster:
            _random_changes(roster, emails, rng)
            probe = rng.choice(emails)
            roster.candidates(signer.hint(probe), signer.hint)  # builds the table in the edit
        clock.advance(timedelta(minutes=1))
        fresh = SubscriberList(tmp_path, clock)  # what another process finds in the index
        with Snapshot.open(readers.path) as snapshot:  # type: ignore[union-attr]
            kept = fresh.index.load(snapshot.identity)
            scanned = survey(snapshot).state
        assert kept is not None
        assert kept.counts == scanned.counts
        assert kept.rows == scanned.rows
        for email in rng.sample(emails, min(20, len(emails))):
            expected = [email] if fresh.get(email) is not None else []
            assert fresh.candidates(signer.hint(email), signer.hint) == expected
        for status in Status:
            assert [s.email for s in fresh.iter(status)] == [
                s.email for s in readers.iter() if s.status is status
            ]


def test_the_index_holds_no_address_and_forgets_a_forgotten_reader(
    tmp_path: Path, clock: FixedClock
) -> None:
    readers = SubscriberList(tmp_path, clock)
    signer = Signer(SECRET)
    with readers.edit() as roster:
        for n in range(50):
            roster.add(f"reader{n}@example.org", via=Source.CLI)
    assert readers.candidates(signer.hint("reader7@example.org"), signer.hint) == [
        "reader7@example.org"
    ]
    with readers.edit() as roster:
        roster.add("victim.person@example.org", via=Source.CLI)
        assert roster.candidates(signer.hint("victim.person@example.org"), signer.hint) == [
            "victim.person@example.org"
        ]
    with readers.edit() as roster:
        roster.forget("victim.person@example.org")
    index = tmp_path / INDEX_DIR
    assert sorted(p.name.split("-")[0] for p in index.iterdir()) == ["hints", "list.json"]
    for path in index.iterdir():
        assert b"@example.org" not in path.read_bytes()
    other = SubscriberList(tmp_path, clock)
    assert other.candidates(signer.hint("victim.person@example.org"), signer.hint) == []
    assert other.candidates(signer.hint("reader7@example.org"), signer.hint) == [
        "reader7@example.org"
    ]


def test_a_hand_edit_under_the_index_is_read_as_it_is(tmp_path: Path, clock: FixedClock) -> None:
    readers = SubscriberList(tmp_path, clock)
    with readers.edit() as roster:
        for name in ("amy", "bob", "cat"):
            roster.add(f"{name}@example.org", via=Source.CLI)
    assert (tmp_path / INDEX_DIR / "list.json").is_file()
    # an editor changes bob's status and appends a reader, in order, keeping the file's size
    text = readers.path.read_text(encoding="utf-8")
    edited = text.replace("bob@example.org,,active", "bob@example.org,,bounced")
    edited += row("dan@example.org", "pending") + "\n"
    readers.path.write_text(edited, encoding="utf-8")
    fresh = SubscriberList(tmp_path, clock)
    assert fresh.counts()[Status.BOUNCED] == 1
    assert fresh.counts()[Status.PENDING] == 1
    assert [s.email for s in fresh.iter(Status.PENDING)] == ["dan@example.org"]
    assert fresh.get("DAN@example.org") is not None
    # the same object, which knew the list before the edit, sees it too
    assert readers.counts()[Status.BOUNCED] == 1
    signer = Signer(SECRET)
    assert readers.candidates(signer.hint("dan@example.org"), signer.hint) == ["dan@example.org"]
    # a damaging edit is found, not hidden by what was known
    readers.path.write_text(edited.replace("dan@example.org,,pending", "dan@example.org,,gone"))
    with pytest.raises(StateError, match=r"line 6: status 'gone'"):
        readers.counts()
    with pytest.raises(StateError, match=r"line 6: status 'gone'"), readers.edit() as roster:
        roster.add("eve@example.org", via=Source.CLI)


def test_a_git_checkout_under_the_index_gives_the_checked_out_list(
    tmp_path: Path, clock: FixedClock
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    folder = repo / "subscribers"
    readers = SubscriberList(folder, clock)
    with readers.edit() as roster:
        roster.add("amy@example.org", via=Source.CLI)
        roster.add("bob@example.org", via=Source.CLI)

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (repo / ".gitignore").write_bytes((Path(__file__).parent.parent / ".gitignore").read_bytes())
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "two")
    with readers.edit() as roster:  # the index now describes a list of three
        roster.add("cat@example.org", via=Source.CLI)
        roster.unsubscribe("amy@example.org", via=Source.CLI)
    signer = Signer(SECRET)
    assert readers.candidates(signer.hint("cat@example.org"), signer.hint) == ["cat@example.org"]
    listed = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert INDEX_DIR not in listed  # never committed
    git("checkout", "-q", "--", "subscribers/subscribers.csv")  # back to the list of two
    for roster_view in (readers, SubscriberList(folder, clock)):
        assert roster_view.counts() == {**dict.fromkeys(Status, 0), Status.ACTIVE: 2}
        assert [s.email for s in roster_view.iter()] == ["amy@example.org", "bob@example.org"]
        assert roster_view.candidates(signer.hint("cat@example.org"), signer.hint) == []
        assert roster_view.candidates(signer.hint("bob@example.org"), signer.hint) == [
            "bob@example.org"
        ]


def test_an_index_of_another_version_or_damaged_is_never_used(
    tmp_path: Path, clock: FixedClock
) -> None:
    readers = SubscriberList(tmp_path, clock)
    with readers.edit() as roster:
        roster.add("amy@example.org", via=Source.CLI)
    index = IndexFolder(tmp_path)
    old = (index.path / "list.json").read_bytes()
    with readers.edit() as roster:
        roster.add("bob@example.org", via=Source.CLI)
    (index.path / "list.json").write_bytes(old)  # a crash between the list and its index
    assert SubscriberList(tmp_path, clock).counts()[Status.ACTIVE] == 2
    (index.path / "list.json").write_bytes(b"{not json")
    assert SubscriberList(tmp_path, clock).counts()[Status.ACTIVE] == 2
    # a hint table that points at the wrong rows finds nobody rather than the wrong reader
    signer = Signer(SECRET)
    with readers.edit() as roster:
        roster.add("cat@example.org", via=Source.CLI)
        roster.candidates(signer.hint("cat@example.org"), signer.hint)
    [table] = [p for p in index.path.iterdir() if p.name.startswith("hints-")]
    raw = bytearray(table.read_bytes())
    count = len(raw) // 12
    raw[4 * count :] = (len(MARKER) + len(HEADER) + 2).to_bytes(8, "little") * count  # all: row 1
    table.write_bytes(bytes(raw))
    found = SubscriberList(tmp_path, clock).candidates(signer.hint("cat@example.org"), signer.hint)
    assert found in ([], ["cat@example.org"])
    assert "amy@example.org" not in found


def _indexed_list(folder: Path, clock: FixedClock) -> tuple[SubscriberList, list[str]]:
    """A list of awkward rows written by this store, its index and one hint table kept."""
    rows = awkward_rows(2000, random.Random(11))
    readers = SubscriberList(folder, clock)
    write_list(readers.path, *rows)
    with readers.edit() as roster:
        roster.add("new.reader@example.net", via=Source.CLI)
        roster.candidates(Signer(SECRET).hint("new.reader@example.net"), Signer(SECRET).hint)
    return readers, list(readers.path.read_text().splitlines()[2:])


def _no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scan(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the list was scanned again")

    monkeypatch.setattr(subscribers_module, "survey", no_scan)
    monkeypatch.setattr(ListScan, "__iter__", no_scan)


def test_a_copy_of_the_list_with_its_index_is_used_without_a_scan(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh checkout with the index restored from a cache: other inode, times, same bytes."""
    readers, rows = _indexed_list(tmp_path / "before", clock)
    copy = tmp_path / "after"
    shutil.copytree(readers.path.parent / INDEX_DIR, copy / INDEX_DIR)
    shutil.copyfile(readers.path, copy / LIST_FILE)
    _no_scan(monkeypatch)
    fresh = SubscriberList(copy, clock)
    counts = readers.counts()
    assert fresh.counts() == counts
    target = parse_line(rows[777])
    assert fresh.get(target.email.upper()) == target
    signer = Signer(SECRET)
    assert fresh.candidates(signer.hint(target.email), signer.hint) == [target.email]
    pending = [line for line in rows if ",pending," in line]
    assert [format_row(s) for s in fresh.iter(Status.PENDING)] == pending
    # the index is kept again for the copy: the next command need not hash it
    assert IndexFolder(copy).load(Snapshot.open(copy / LIST_FILE).identity) is not None  # type: ignore[union-attr]
    with fresh.edit() as roster:  # spliced in, as in the original folder
        roster.unsubscribe(target.email, via=Source.CLI, ref="test")
    assert SubscriberList(copy, clock).counts()[Status.UNSUBSCRIBED] == (
        counts[Status.UNSUBSCRIBED] + (target.status is not Status.UNSUBSCRIBED)
    )


def _copy_changed(readers: SubscriberList, rows: list[str], before: str, after: str) -> Path:
    """A copy of the list and its index, with ``before`` made ``after`` (same length) in one
    row past the first hundred; the copy's folder."""
    line = next(x for n, x in enumerate(rows) if before in x and n > 100)
    copy = readers.path.parent.parent / "after"
    shutil.copytree(readers.path.parent / INDEX_DIR, copy / INDEX_DIR)
    data = readers.path.read_bytes()
    changed = data.replace(line.encode(), line.replace(before, after, 1).encode())
    assert len(changed) == len(data)
    assert changed != data
    (copy / LIST_FILE).write_bytes(changed)
    return copy


def test_a_copy_with_one_byte_damaged_names_the_damage(tmp_path: Path, clock: FixedClock) -> None:
    readers, rows = _indexed_list(tmp_path / "before", clock)
    copy = _copy_changed(readers, rows, ",,active,", ",,activa,")
    line_no = 3 + next(n for n, x in enumerate(rows) if ",,active," in x and n > 100)
    fresh = SubscriberList(copy, clock)
    with pytest.raises(StateError, match=rf"line {line_no}: status 'activa'"):
        fresh.counts()
    damage = rf"line {line_no}: status 'activa'"
    with pytest.raises(StateError, match=damage), fresh.edit() as roster:
        roster.add("eve@example.org", via=Source.CLI)


def test_a_copy_with_one_status_changed_in_place_is_read_as_it_is(
    tmp_path: Path, clock: FixedClock
) -> None:
    readers, rows = _indexed_list(tmp_path / "before", clock)
    copy = _copy_changed(readers, rows, ",pending,", ",bounced,")  # the same size
    counts = readers.counts()
    fresh = SubscriberList(copy, clock)
    assert fresh.counts() == {
        **counts,
        Status.PENDING: counts[Status.PENDING] - 1,
        Status.BOUNCED: counts[Status.BOUNCED] + 1,
    }
    assert len(list(fresh.iter(Status.PENDING))) == counts[Status.PENDING] - 1


def test_a_version_1_list_is_merged_by_the_first_import(tmp_path: Path, clock: FixedClock) -> None:
    readers = SubscriberList(tmp_path, clock)
    v1 = "# crusader-mail subscribers v1"
    readers.path.write_text(
        "\n".join([v1, HEADER, row("Carol@x.org"), row("carol@x.org", "unsubscribed")]) + "\n"
    )
    given = [("dave@x.org", "Dave"), ("CAROL@x.org", "")]
    report = readers.add_many(given, status=Status.ACTIVE, via=Source.IMPORT, ref="list.csv")
    assert report.added == 1
    assert readers.path.read_text().splitlines()[0] == MARKER
    assert {s.email: s.status for s in readers.iter()} == {
        "Carol@x.org": Status.UNSUBSCRIBED,
        "dave@x.org": Status.ACTIVE,
    }


# --- imports ----------------------------------------------------------------------------------


def test_an_import_larger_than_a_run_is_sorted_merged_and_leaves_nothing_behind(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module.SortedSpool.__init__, "__defaults__", (7,))
    rng = random.Random(3)
    readers = SubscriberList(tmp_path / "subscribers", clock)
    with readers.edit() as roster:
        for n in range(0, 60, 3):
            roster.add(f"r{n:03d}@example.org", via=Source.CLI)
        roster.unsubscribe("r003@example.org", via=Source.EMAIL)
    given = [(f"r{n:03d}@example.org", f"Name {n}") for n in range(60)]
    given += [("R010@example.org", "Again")]  # the same mailbox twice: one reader
    rng.shuffle(given)
    report = readers.add_many(given, status=Status.ACTIVE, via=Source.IMPORT, ref="big.csv")
    assert report.added == 40
    assert report.unchanged == {"active": 20, "unsubscribed": 1}
    assert report.names_filled == 20  # the readers added by hand had no name
    listed = {s.email: s for s in readers.iter()}
    assert len(listed) == 60
    [ten] = [reader for email, reader in listed.items() if email.lower() == "r010@example.org"]
    assert (ten.email, ten.name) in {("r010@example.org", "Name 10"), ("R010@example.org", "Again")}
    assert listed["r003@example.org"].status is Status.UNSUBSCRIBED
    assert sum(1 for event in readers.history() if event.ref == "big.csv") == 40 + 20
    folder = readers.path.parent
    assert leftovers(readers.path) == []
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == [
        INDEX_DIR,
        "consent-log.csv",
        LIST_FILE,
    ]


def test_read_import_spilled_reads_as_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "people.csv"
    rng = random.Random(5)
    lines = ["Email Address,First Name,status"]
    for n in range(300):
        email = f"P{n % 120}@Example.org" if n % 7 == 0 else f"p{n % 120}@example.org"
        status = "unsubscribed" if n % 11 == 0 else "subscribed"
        lines.append(f"{email},{'Name' if n % 3 else ''} {n},{status}")
    lines.insert(rng.randrange(1, 300), "not an address,X,subscribed")
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    held = read_import(source)
    monkeypatch.setattr(spool_module, "RUN", 13)
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr("crusader_mail.subscriptions.imports.RUN", 13)
    spilled = read_import(source, spool)
    assert spilled.rows == held.rows
    assert spilled.left == held.left
    assert (spilled.duplicates, spilled.case_merged, spilled.bad) == (
        held.duplicates,
        held.case_merged,
        held.bad,
    )
    assert list(spilled.joining()) == list(spilled.joining())  # read again: the same
    keys = [mailbox_key(email) for email, _name in spilled.joining()]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    "raw",
    [
        "jane@example.com",
        " Jane.Doe@EXAMPLE.com ",
        "x+tag@Sub.Example.ORG",
        "jane@münchen.de",
        "JANE@XN--MNCHEN-3YA.DE",
        '"quoted local"@example.com',
        "a..b@example.com",
        "jane@example",
        "jane@@example.com",
        "",
        "Ünïcode@example.com",
        "x" * 65 + "@example.com",
    ],
)
def test_the_fast_normal_form_is_the_normal_form(raw: str) -> None:
    expected = normal_or_none(raw)
    if expected is None:
        with pytest.raises(InvalidAddress):
            AddressCheck().normal(raw)
    else:
        assert AddressCheck().normal(raw) == expected


def test_a_list_written_without_the_index_still_opens(tmp_path: Path, clock: FixedClock) -> None:
    """An index that cannot be written (a read-only folder, a full disk) costs speed only."""
    readers = SubscriberList(tmp_path, clock)
    (tmp_path / INDEX_DIR).write_text("in the way")  # a file where the folder should be
    with readers.edit() as roster:
        roster.add("amy@example.org", via=Source.CLI)
    assert readers.counts()[Status.ACTIVE] == 1
    assert SubscriberList(tmp_path, clock).get("AMY@example.org") is not None
