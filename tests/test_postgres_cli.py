"""The PostgreSQL store through the command line: ``db upgrade`` and ``db status``, the one-line
refusals (no schema, an old or newer one, ``database_url`` in the config file), subscriber
commands on the database, commands without a database never loading psycopg, and which stores
``serve`` takes as shared."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.models import Frequency, Preferences, Source, Status
from crusader_mail.settings import ServerSettings, Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.postgres import schema
from tests.support.serving import free_port, serve_process

EXE = Path(sys.executable).with_name("crusader-mail")


def crusader_mail(
    folder: Path, *args: str, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command in ``folder``, with only the database URL in its environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}
    if database_url is not None:
        env["CRUSADER_MAIL_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(EXE), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )


def ok(clock: FixedClock, *args: str) -> str:
    """``subscribers ARGS``, which must succeed: its output. One process context per command:
    its store closes when it ends."""
    result = CliRunner().invoke(cli, ["subscribers", *args], obj=AppContext(clock=clock))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_db_upgrade_creates_then_finds_the_schema_up_to_date(
    empty_database_url: str, tmp_path: Path
) -> None:
    where = empty_database_url.removeprefix("postgresql://postgres@")
    status = crusader_mail(tmp_path, "db", "status", database_url=empty_database_url)
    assert (status.returncode, status.stderr) == (
        2,
        f"crusader-mail: error: PostgreSQL at {where} has no crusader-mail tables yet: run "
        "`crusader-mail db upgrade`\n",
    )
    latest = schema.latest()
    every = ", ".join(f"{m.version:04d}_{m.name}" for m in schema.migrations())
    assert every.startswith("0001_initial, 0002_feed_failures, 0003_consent_history")
    first = crusader_mail(tmp_path, "db", "upgrade", database_url=empty_database_url)
    assert (first.returncode, first.stdout, first.stderr) == (
        0,
        f"{where}: schema upgraded from no schema to version {latest} ({every})\n",
        "",
    )
    again = crusader_mail(tmp_path, "db", "upgrade", database_url=empty_database_url)
    assert again.stdout == f"{where}: the schema is up to date (version {latest})\n"
    status = crusader_mail(tmp_path, "db", "status", database_url=empty_database_url)
    assert (status.returncode, status.stdout) == (
        0,
        f"{where}: schema version {latest}, up to date\n",
    )


def test_commands_on_a_missing_or_old_schema_say_to_run_db_upgrade(
    empty_database_url: str, tmp_path: Path
) -> None:
    missing = crusader_mail(tmp_path, "subscribers", "stats", database_url=empty_database_url)
    assert missing.returncode == 2
    assert missing.stderr.endswith(
        "has no crusader-mail tables yet: run `crusader-mail db upgrade`\n"
    )
    assert missing.stderr.count("\n") == 1
    crusader_mail(tmp_path, "db", "upgrade", database_url=empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_version WHERE version > 1")
        conn.execute("UPDATE schema_version SET version = 0")
    old = crusader_mail(
        tmp_path, "subscribers", "add", "a@example.com", database_url=empty_database_url
    )
    assert old.returncode == 2
    assert old.stderr.startswith("crusader-mail: error: the crusader-mail schema in PostgreSQL at ")
    assert old.stderr.endswith(f"needs version {schema.latest()}: run `crusader-mail db upgrade`\n")
    status = crusader_mail(tmp_path, "db", "status", database_url=empty_database_url)
    assert (status.returncode, status.stdout, status.stderr.count("\n")) == (2, "", 1)


def test_a_database_url_in_the_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "crusader-mail.toml").write_text(
        'database_url = "postgresql://news:hunter2-secret@db.example/news"\n', encoding="utf-8"
    )
    done = crusader_mail(tmp_path, "subscribers", "stats")
    assert done.returncode == 2
    assert done.stderr == (  # the one refusal of every secret setting
        "crusader-mail: error: crusader-mail.toml: database_url is a secret, never read from a "
        "config file (it gets committed): remove it and set CRUSADER_MAIL_DATABASE_URL in the "
        "environment (a GitHub secret, or .env beside the file)\n"
    )
    assert "hunter2" not in done.stdout + done.stderr


def test_the_database_url_may_come_from_dot_env(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "crusader-mail.toml").write_text('subscribers_dir = "people"\n', encoding="utf-8")
    (tmp_path / ".env").write_text(f"CRUSADER_MAIL_DATABASE_URL={database_url}\n", encoding="utf-8")
    added = crusader_mail(tmp_path, "subscribers", "add", "Dot@Env.example")
    assert (added.returncode, added.stdout) == (0, "added D•••@env.example (active)\n")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT mailbox, email FROM readers").fetchall() == [
            ("dot@env.example", "Dot@env.example")
        ]
    assert not (tmp_path / "people").exists()


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://news:hunter2-secret@127.0.0.1:{port}/news"
    done = crusader_mail(tmp_path, "subscribers", "stats", database_url=url)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"crusader-mail: error: cannot connect to PostgreSQL at 127.0.0.1:{port}/news: "
    )
    assert "hunter2" not in done.stderr
    assert done.stderr.count("\n") == 1
    shown = crusader_mail(tmp_path, "config", "check", "--json", database_url=url)
    rows = {row["key"]: row for row in json.loads(shown.stdout)["settings"]}
    assert rows["database_url"]["value"] == "**********"
    assert "hunter2" not in shown.stdout


def test_subscriber_commands_work_on_the_database(
    database_url: str, clean_env: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRUSADER_MAIL_DATABASE_URL", database_url)

    (clean_env / "list.csv").write_text(
        "email,name\nAnn@Example.com,Ann\nbo@example.com,Bo\nann@example.com,\n", encoding="utf-8"
    )
    assert ok(clock, "import", "list.csv").splitlines() == [
        "using column 'email' for the address and 'name' for the name",
        "added 2 readers (active)",
        "merged 1 row that differs only in case",
    ]
    assert (
        ok(clock, "add", "ANN@example.com")
        == "A•••@example.com is already on the list (active): unchanged\n"
    )
    assert ok(clock, "remove", "bo@EXAMPLE.com") == "unsubscribed b•••@example.com (was active)\n"
    counts = json.loads(ok(clock, "stats", "--json"))["counts"]
    assert (counts[Status.ACTIVE.value], counts[Status.UNSUBSCRIBED.value]) == (1, 1)
    exported = ok(clock, "export").splitlines()
    assert exported[0].startswith("email,name,status,")
    assert [line.split(",")[:3] for line in exported[1:]] == [
        ["Ann@example.com", "Ann", "active"],
        ["bo@example.com", "Bo", "unsubscribed"],
    ]
    assert not (clean_env / "subscribers").exists()  # nothing written beside the config


def test_readers_and_their_history_move_from_the_files_to_the_database(
    database_url: str, clean_env: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(clock, "add", "Ann@example.com", "--name", "Ann")  # the files store: no database set
    ok(clock, "add", "bo@example.com")
    clock.advance(timedelta(hours=1))
    ok(clock, "remove", "BO@example.com")
    ok(clock, "export", "--out", "readers.csv")
    ok(clock, "export", "--history", "--out", "history.csv")
    history = (clean_env / "history.csv").read_text(encoding="utf-8").splitlines()
    assert len(history) == 1 + 3  # the header, two adds and the unsubscribe
    monkeypatch.setenv("CRUSADER_MAIL_DATABASE_URL", database_url)
    clock.advance(timedelta(days=1))
    ok(clock, "import", "--restore", "readers.csv")
    ok(clock, "import", "--restore", "history.csv")
    assert ok(clock, "export").splitlines() == (clean_env / "readers.csv").read_text().splitlines()
    moved = ok(clock, "export", "--history").splitlines()
    restored = [line.split(",")[1:5] for line in moved[1:3]]  # the restore, then the history
    assert restored == [
        ["Ann@example.com", "restore", "active", "import"],
        ["bo@example.com", "restore", "unsubscribed", "import"],
    ]
    assert [moved[0], *moved[3:]] == history


def test_a_readers_pause_and_topics_move_to_the_database_and_back(
    database_url: str, clean_env: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(clock, "add", "Ann@example.com")  # the files store: no database set
    ok(clock, "add", "bo@example.com")
    ok(clock, "add", "cy@example.com")
    until = clock.now() + timedelta(weeks=8)
    chosen = {
        "ann@example.com": Preferences(paused_until=until),
        "bo@example.com": Preferences(frequency=Frequency.WEEKLY, topics=("Pricing", "Sales")),
    }
    with closing(open_store(Settings(), clock)) as files:
        with files.roster.edit() as changes:
            for email, prefs in chosen.items():
                changes.set_preferences(email, prefs, via=Source.WEB, ref="web:1")
        assert files.roster.preferences() == chosen
    ok(clock, "export", "--out", "readers.csv")
    ok(clock, "export", "--history", "--out", "history.csv")
    assert ok(clock, "export", "--preferences", "--out", "preferences.csv") == (
        "exported 2 preferences to preferences.csv\n"
    )
    exported = (clean_env / "preferences.csv").read_text(encoding="utf-8")
    assert exported == (
        "mailbox,frequency,topics,paused_until\n"
        f"ann@example.com,,,{until:%Y-%m-%dT%H:%M:%SZ}\n"
        "bo@example.com,weekly,Pricing|Sales,\n"
    )
    monkeypatch.setenv("CRUSADER_MAIL_DATABASE_URL", database_url)
    ok(clock, "import", "--restore", "readers.csv")
    assert ok(clock, "import", "--restore", "preferences.csv") == (
        "restored the preferences of 2 readers from preferences.csv\n"
    )
    ok(clock, "import", "--restore", "history.csv")
    assert ok(clock, "export", "--preferences") == exported
    moved = json.loads(ok(clock, "export", "--preferences", "--json"))
    assert moved["count"] == 2
    assert moved["preferences"][0]["mailbox"] == "ann@example.com"
    history = ok(clock, "export", "--history").splitlines()
    assert sum(",pause," in line or ",preferences," in line for line in history) == 2  # once
    # and back to files: a new folder, the database unset
    monkeypatch.delenv("CRUSADER_MAIL_DATABASE_URL")
    back = clean_env / "back"
    back.mkdir()
    monkeypatch.chdir(back)
    monkeypatch.setenv("CRUSADER_MAIL_DATABASE_URL", database_url)
    ok(clock, "export", "--preferences", "--out", "preferences.csv")
    ok(clock, "export", "--out", "readers.csv")
    monkeypatch.delenv("CRUSADER_MAIL_DATABASE_URL")
    ok(clock, "import", "--restore", "readers.csv")
    ok(clock, "import", "--restore", "preferences.csv")
    with closing(open_store(Settings(), clock)) as files:
        assert files.roster.preferences() == chosen
        assert files.roster.preferences()["ann@example.com"].paused(clock.now())


NO_PSYCOPG = """
import sys
from crusader_mail.cli import main
try:
    main(["subscribers", "stats", "--json"])
except SystemExit as done:
    assert done.code == 0, done.code
print("psycopg" in sys.modules)
"""


def test_commands_without_a_database_never_load_psycopg(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_PSYCOPG],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CRUSADER_MAIL_DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "False"), done.stderr


def test_serve_needs_a_store_it_shares_with_the_job(clean_env: Path, tmp_path: Path) -> None:
    # an empty database_url (an unset CI secret) is no database: the files store is refused
    refused = crusader_mail(tmp_path, "serve", "--port", "0", database_url="")
    assert refused.returncode == 2
    assert refused.stderr.startswith("crusader-mail: error: serve: the files store keeps")
    assert refused.stderr.count("\n") == 1
    assert not Settings(database_url=SecretStr("")).shares_store
    assert Settings(database_url=SecretStr("postgresql://db.example/news")).shares_store
    # [server] same_host says the job runs here, on these files: as --same-host does
    assert Settings(server=ServerSettings(same_host=True)).shares_store
    templates = Path(__file__).resolve().parent.parent / "templates"
    (tmp_path / "crusader-mail.toml").write_text(
        f'templates_dir = "{templates}"\n[server]\nsame_host = true\n', encoding="utf-8"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CRUSADER_MAIL_DATABASE_URL": ""}
    env["SENDGRID_API_KEY"] = "SG.replies-go-nowhere-in-this-test"
    env["CRUSADER_MAIL_SECRET_KEY"] = "serve-test-secret-0123456789"
    with serve_process(tmp_path, env, free_port()) as served:
        assert httpx.get(f"{served.url}/unsubscribe?token=nonsense").status_code == 400
    assert "serving" in served.stderr
