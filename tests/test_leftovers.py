"""A write of the list killed with SIGKILL leaves its temporary file (a copy of the list): the
next change removes it, ``subscribers remove --forget`` erases it and says so, and git never
sees it. The kill is real: a child process streaming the list (the suppression sync's
``update_many``) kills itself halfway through."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from crusader_mail.storage.files.list_format import HEADER, MARKER
from crusader_mail.util.statefile import atomic_write, leftovers, locked
from tests.support.commands import REPO, run_cli, write_site_config
from tests.support.lists import row

VICTIM = "aaron.victim@example.org"
READERS = 20_000

KILL_MIDWAY = """
import os, signal, sys
from pathlib import Path
from crusader_mail.clock import SystemClock
from crusader_mail.storage.files.subscribers import SubscriberList

def die(changes, email):
    os.kill(os.getpid(), signal.SIGKILL)

# a match of its own: the whole list is streamed into the new file (no look-up by key)
SubscriberList(Path(sys.argv[1]), SystemClock()).update_many(
    [sys.argv[2]], die, match=lambda email: email.lower()
)
"""


def _reader(number: int) -> str:
    return f"reader{number:06d}@example.org"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with a config and a list of ``READERS`` readers, ``VICTIM`` among the first."""
    write_site_config(tmp_path)
    emails = sorted([VICTIM, *(_reader(n) for n in range(READERS))])
    lines = [MARKER, HEADER, *(row(email) for email in emails)]
    atomic_write(tmp_path / "subscribers" / "subscribers.csv", "\n".join(lines) + "\n")
    return tmp_path


def _kill_a_write(site: Path) -> Path:
    """A child streams the list into its temporary file and is killed at the last reader; the
    temporary file it leaves, which holds the victim's address."""
    folder = site / "subscribers"
    before = (folder / "subscribers.csv").read_bytes()
    child = subprocess.run(
        [sys.executable, "-c", KILL_MIDWAY, str(folder), _reader(READERS - 1)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    [left] = leftovers(folder / "subscribers.csv")
    assert VICTIM.encode() in left.read_bytes()
    assert (folder / "subscribers.csv").read_bytes() == before  # the list itself is whole
    return left


def _holding(site: Path, text: str) -> list[Path]:
    """Every file under ``site`` whose bytes contain ``text``."""
    return [
        path for path in site.rglob("*") if path.is_file() and text.encode() in path.read_bytes()
    ]


def test_the_next_change_removes_what_a_killed_write_left(site: Path) -> None:
    left = _kill_a_write(site)
    added = run_cli(site, "subscribers", "add", "new.reader@example.org")
    assert added.returncode == 0, added.stderr
    assert not left.exists()
    assert leftovers(site / "subscribers" / "subscribers.csv") == []
    listed = run_cli(site, "subscribers", "stats", "--json")
    assert '"total": 20002' in listed.stdout  # the list as it was, and the new reader


def test_forget_erases_the_copy_a_killed_write_left_and_says_so(site: Path) -> None:
    left = _kill_a_write(site)
    forgot = run_cli(site, "subscribers", "remove", "--forget", VICTIM)
    assert forgot.returncode == 0, forgot.stderr
    assert "erased a•••@example.org" in forgot.stdout
    assert "1 temporary copy of subscribers.csv" in forgot.stdout
    assert left.name in forgot.stdout
    assert VICTIM not in forgot.stdout
    assert _holding(site, VICTIM) == []


def test_forget_names_a_leftover_it_could_not_erase(site: Path) -> None:
    """A queued mail file's leftover (replies hold addresses) is named, with what to do."""
    mail_leftover = site / "subscribers" / ".pending-mail.jsonl.k2j4x9q0.tmp"
    mail_leftover.write_text(f'{{"to": "{VICTIM}"}}\n')
    forgot = run_cli(site, "subscribers", "remove", "--forget", "nobody@example.org")
    assert forgot.returncode == 0, forgot.stderr
    assert f"may hold the address: {mail_leftover}" in forgot.stdout


def test_git_ignores_what_a_killed_write_left(site: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    left = _kill_a_write(site)
    shutil.copy(REPO / ".gitignore", site / ".gitignore")
    subprocess.run(["git", "init", "-q", str(site)], check=True)
    ignored = subprocess.run(
        ["git", "-C", str(site), "check-ignore", "-q", str(left.relative_to(site))], check=False
    )
    assert ignored.returncode == 0
    listed = subprocess.run(
        ["git", "-C", str(site), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ".tmp" not in listed.stdout
    assert "subscribers/subscribers.csv" in listed.stdout


def test_only_the_writers_own_leftovers_are_removed_and_only_under_the_lock(
    tmp_path: Path,
) -> None:
    target = tmp_path / "subscribers.csv"
    atomic_write(target, "list\n")
    own = [tmp_path / ".subscribers.csv.ab_3x9zq.tmp", tmp_path / ".subscribers.csv.00000000.tmp"]
    others = [
        tmp_path / ".subscribers.csv.short.tmp",
        tmp_path / ".subscribers.csv.ab_3x9zq.tmp.keep",
        tmp_path / ".subscribers.csv.AB_3X9ZQ.tmp",
        tmp_path / ".pending-mail.jsonl.ab_3x9zq.tmp",
        tmp_path / "subscribers.csv.ab_3x9zq.tmp",
        tmp_path / "notes.tmp",
    ]
    for path in own + others:
        path.write_text("x\n")
    assert leftovers(target) == sorted(own)
    assert all(path.exists() for path in own)  # finding them removes nothing
    removed: list[Path] = []
    with locked(target, removed=removed):
        assert sorted(removed) == sorted(own)
    assert sorted(p for p in tmp_path.iterdir() if p.suffix != ".lock") == sorted([target, *others])
    assert target.read_text() == "list\n"
