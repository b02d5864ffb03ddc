"""``subscribers export --preferences`` and ``import --restore`` of it (the files store; the
move to PostgreSQL and back is in ``test_postgres_cli.py``): the files store's own
``preferences.csv`` restores as it is; a damaged file, or preferences of someone not on the
list, is refused in one line naming each problem, and nothing is stored."""

from __future__ import annotations

import re
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.errors import CrusaderMailError
from crusader_mail.models import Frequency, Preferences, Source
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store

HEADER = "mailbox,frequency,topics,paused_until\n"


def subscribers(clock: FixedClock, *args: str) -> Result:
    return CliRunner().invoke(cli, ["subscribers", *args], obj=AppContext(clock=clock))


def ok(clock: FixedClock, *args: str) -> str:
    result = subscribers(clock, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def stored(clock: FixedClock) -> dict[str, Preferences]:
    with closing(open_store(Settings(), clock)) as store:
        return store.roster.preferences()


@pytest.fixture
def readers(clean_env: Path, clock: FixedClock) -> Path:
    for email in ("Ann@example.com", "bo@example.com"):
        ok(clock, "add", email)
    return clean_env


def test_the_files_stores_own_file_restores_into_another_folder(
    readers: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with closing(open_store(Settings(), clock)) as store, store.roster.edit() as changes:
        until = clock.now() + timedelta(weeks=4)
        changes.set_preferences("ann@example.com", Preferences(paused_until=until), via=Source.WEB)
        weekly = Preferences(frequency=Frequency.WEEKLY, topics=("Sales, and more",))
        changes.set_preferences("bo@example.com", weekly, via=Source.WEB)
    chosen = stored(clock)
    ok(clock, "export", "--out", "readers.csv")
    exported = ok(clock, "export", "--preferences")
    assert exported.splitlines()[2] == 'bo@example.com,weekly,"Sales, and more",'
    other = readers / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    ok(clock, "import", "--restore", str(readers / "readers.csv"))
    own = readers / "subscribers" / "preferences.csv"
    assert own.read_text(encoding="utf-8").startswith("# crusader-mail preferences v1\n")
    assert ok(clock, "import", "--restore", str(own)) == (
        "restored the preferences of 2 readers from preferences.csv\n"
    )
    assert stored(clock) == chosen
    assert ok(clock, "export", "--preferences") == exported


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (
            "ann@example.com,,,\nzed@example.com,weekly,,\n",
            r"preferences of 1 mailbox\(es\) not on the list \(z•••@example\.com\): restore the "
            r"readers first; nothing stored",
        ),
        (
            "ann@example.com,daily,,\nAnn@example.com,,,\ncy@example.com,,,yesterday\n"
            "bo@example.com,weekly,,\nbo@example.com,,,\n",
            r"preferences\.csv: 4 bad rows, nothing restored: line 2: frequency 'daily' is not "
            r"one of every_post, weekly; line 3: mailbox 'A•••@example\.com' is not a lowercased "
            r"address; line 4: paused_until 'yesterday' is not an ISO 8601 time; line 6: "
            r"b•••@example\.com has its preferences on line 5",
        ),
    ],
    ids=["not on the list", "damaged rows"],
)
def test_a_file_that_cannot_be_restored_whole_stores_nothing(
    readers: Path, clock: FixedClock, rows: str, problem: str
) -> None:
    (readers / "preferences.csv").write_text(HEADER + rows, encoding="utf-8")
    done = subscribers(clock, "import", "--restore", "preferences.csv")
    assert isinstance(done.exception, CrusaderMailError)  # main() prints it as one line
    line = str(done.exception)
    assert "\n" not in line
    assert re.search(problem, line), line
    assert "zed@example.com" not in line
    assert stored(clock) == {}


def test_history_and_preferences_are_two_exports(readers: Path, clock: FixedClock) -> None:
    done = subscribers(clock, "export", "--history", "--preferences")
    assert done.exit_code == 2
    assert "one at a time" in done.output
