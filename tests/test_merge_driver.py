"""The git merge driver of ``subscribers.csv`` (``crusader-mail merge-driver %O %A %B``):
reader by reader, the later change wins, leaving is never undone, forgotten stays forgotten."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.files.list_format import render, scan
from crusader_mail.storage.files.merge import merge_files
from crusader_mail.storage.rows import build, format_row

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("crusader-mail")
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def reader(
    email: str,
    status: Status = Status.ACTIVE,
    *,
    at: int = 0,
    name: str = "",
    joined: int = 0,
    left: int | None = None,
) -> Subscriber:
    """A reader whose last change was ``at`` days after T0 (joined and left likewise)."""
    staying = status in (Status.ACTIVE, Status.PENDING)
    left_at = None if staying else T0 + timedelta(days=at if left is None else left)
    return Subscriber(
        email=email,
        name=name,
        status=status,
        subscribed_at=T0 + timedelta(days=joined),
        subscribed_via=Source.EMAIL,
        confirmed_at=T0 + timedelta(days=joined) if status is not Status.PENDING else None,
        confirmed_via=Source.EMAIL if status is not Status.PENDING else None,
        left_at=left_at,
        left_via=None if staying else Source.WEB,
        updated_at=T0 + timedelta(days=at),
    )


def write(path: Path, readers: list[Subscriber]) -> Path:
    rows = sorted(format_row(r) for r in readers)
    path.write_bytes(render(rows))
    return path


def merged(
    tmp_path: Path, base: list[Subscriber], ours: list[Subscriber], theirs: list[Subscriber]
) -> dict[str, Subscriber]:
    o = write(tmp_path / "O", base)
    a = write(tmp_path / "A", ours)
    b = write(tmp_path / "B", theirs)
    merge_files(o, a, b)
    rows = list(scan(a))  # ordered=True: a valid, sorted list or StateError
    return {fields[0]: build(fields, status) for _no, _line, fields, status in rows}


def test_a_change_on_one_side_is_taken(tmp_path: Path) -> None:
    base = [reader("a@x.example"), reader("b@x.example")]
    ours = [reader("a@x.example", Status.UNSUBSCRIBED, at=3), reader("b@x.example")]
    theirs = [reader("a@x.example"), reader("b@x.example", name="Bee", at=2)]
    got = merged(tmp_path, base, ours, theirs)
    assert got["a@x.example"].status is Status.UNSUBSCRIBED
    assert got["b@x.example"].name == "Bee"


def test_readers_added_on_both_sides_are_all_kept_in_order(tmp_path: Path) -> None:
    base = [reader("m@x.example")]
    got = merged(
        tmp_path,
        base,
        [*base, reader("a@x.example", at=1), reader("z@x.example", at=1)],
        [*base, reader("b@x.example", at=2), reader("n@x.example", at=2)],
    )
    assert list(got) == [
        "a@x.example",
        "b@x.example",
        "m@x.example",
        "n@x.example",
        "z@x.example",
    ]


def test_forgotten_on_one_side_stays_forgotten(tmp_path: Path) -> None:
    base = [reader("a@x.example"), reader("b@x.example")]
    # a: forgotten on our side, unchanged on theirs; b: forgotten on theirs, changed on ours
    ours = [reader("b@x.example", name="Changed", at=5)]
    theirs = [reader("a@x.example")]
    assert merged(tmp_path, base, ours, theirs) == {}


def test_the_later_change_wins_with_its_whole_consent_record(tmp_path: Path) -> None:
    base = [reader("a@x.example", Status.PENDING)]
    earlier = reader("a@x.example", Status.ACTIVE, at=2, name="Early")
    later = reader("a@x.example", Status.PENDING, at=4, name="Late")
    for ours, theirs in ((earlier, later), (later, earlier)):
        got = merged(tmp_path, base, [ours], [theirs])
        assert got["a@x.example"] == later


def test_leaving_is_never_undone_by_a_later_change_of_the_same_subscription(
    tmp_path: Path,
) -> None:
    base = [reader("a@x.example", Status.PENDING)]
    left = reader("a@x.example", Status.UNSUBSCRIBED, at=2)  # one-click on the server
    confirmed = reader("a@x.example", Status.ACTIVE, at=5)  # a later confirmation elsewhere
    for ours, theirs in ((left, confirmed), (confirmed, left)):
        assert merged(tmp_path, base, [ours], [theirs])["a@x.example"] == left


def test_a_new_request_after_leaving_brings_the_reader_back(tmp_path: Path) -> None:
    base = [reader("a@x.example")]
    left = reader("a@x.example", Status.UNSUBSCRIBED, at=2)
    rejoined = reader("a@x.example", Status.PENDING, at=6, joined=6)
    assert merged(tmp_path, base, [left], [rejoined])["a@x.example"] == rejoined


def test_case_variants_are_one_mailbox(tmp_path: Path) -> None:
    base = [reader("Carol@x.example")]
    ours = [reader("Carol@x.example", Status.UNSUBSCRIBED, at=3)]
    theirs = [reader("carol@x.example", at=1), reader("Carol@x.example")]
    got = merged(tmp_path, base, ours, theirs)
    assert [r.status for r in got.values()] == [Status.UNSUBSCRIBED]


def test_a_damaged_version_is_a_conflict_named_in_one_line(tmp_path: Path) -> None:
    o = write(tmp_path / "O", [reader("a@x.example")])
    a = write(tmp_path / "A", [reader("a@x.example")])
    b = tmp_path / "B"
    b.write_text("<<<<<<< HEAD\n", encoding="utf-8")
    done = subprocess.run(
        [str(CLI), "merge-driver", str(o), str(a), str(b)], capture_output=True, text=True
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("crusader-mail: error: ")
    assert str(b) in line
    assert a.read_bytes() == render([format_row(reader("a@x.example"))])  # untouched


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{CLI.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("driver", [True, False])
def test_git_merges_neighbouring_edits_only_with_the_driver(tmp_path: Path, driver: bool) -> None:
    """Two branches change neighbouring rows: git's line merge conflicts; the driver named in
    .gitattributes (configured as scripts/commit-state.sh does) merges them."""
    work = tmp_path / "work"
    (work / "subscribers").mkdir(parents=True)
    shutil.copy(REPO / ".gitattributes", work / ".gitattributes")
    csv = work / "subscribers" / "subscribers.csv"
    write(csv, [reader("a@x.example"), reader("b@x.example"), reader("c@x.example")])
    assert _git(work, "init", "-q", "-b", "main").returncode == 0
    if driver:
        _git(
            work,
            "config",
            "merge.crusader-subscribers.driver",
            "crusader-mail merge-driver %O %A %B",
        )
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "base")
    _git(work, "checkout", "-qb", "editor")
    write(
        csv, [reader("a@x.example"), reader("b@x.example", name="Bee", at=1), reader("c@x.example")]
    )
    _git(work, "commit", "-qam", "editor renames b")
    _git(work, "checkout", "-q", "main")
    write(
        csv,
        [
            reader("a@x.example", Status.UNSUBSCRIBED, at=2),
            reader("b@x.example"),
            reader("bb@x.example", at=2),
            reader("c@x.example"),
        ],
    )
    _git(work, "commit", "-qam", "run: a left, bb joined")
    done = _git(work, "rebase", "editor")
    if not driver:
        assert done.returncode != 0
        assert "CONFLICT" in done.stdout + done.stderr
        return
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {fields[0]: fields for _n, _l, fields, _s in scan(csv)}
    assert list(rows) == ["a@x.example", "b@x.example", "bb@x.example", "c@x.example"]
    assert rows["a@x.example"][2] == "unsubscribed"
    assert rows["b@x.example"][1] == "Bee"
