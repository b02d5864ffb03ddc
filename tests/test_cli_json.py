"""Every command takes ``--json``: run as a real process, it prints exactly one JSON document on
stdout (``json.loads`` of the whole of it), keeps its notes for stderr, and shows addresses
masked wherever its text output masks them. A command added without a case here fails
:func:`test_every_command_is_checked_here`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from crusader_mail.cli import cli
from crusader_mail.storage.postgres import schema
from tests.support.commands import REPO, SECRET, write_site_config

CLI = REPO / ".venv" / "bin" / "crusader-mail"
FEED = REPO / "examples" / "biz-crusader" / "feed.xml"
ANN, BOB = "ann.archer@example.com", "bob.baker@example.com"
EXEMPT = {
    "merge-driver": "git's merge driver: git reads its exit code and the merged file, no output",
}


def leaf_commands(
    command: click.Command = cli,
    path: tuple[str, ...] = (),
    parent: click.Context | None = None,
) -> Iterator[str]:
    """Every command a user (or git) can run, hidden ones included, as ``"subscribers add"``:
    asked of each group as click asks it (the top level imports its commands when used)."""
    ctx = click.Context(command, info_name=path[-1] if path else "crusader-mail", parent=parent)
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join((*path, name))} is listed and cannot be found"
            yield from leaf_commands(sub, (*path, name), ctx)
    else:
        yield " ".join(path)


def find(name: str) -> click.Command:
    """The command ``name`` (``"db upgrade"``), found as click finds it."""
    command: click.Command = cli
    ctx = click.Context(cli, info_name="crusader-mail")
    for part in name.split():
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, part)
        assert found is not None, f"no command {name!r}"
        command, ctx = found, click.Context(found, info_name=part, parent=ctx)
    return command


class Site:
    """A newsletter folder: the example feed, two active readers, SendGrid where nothing
    listens (127.0.0.1:9), the secrets in the environment of each command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.config = write_site_config(root, f'feeds = ["{FEED}"]\noutbox_dir = "outbox"')
        self.env = {"CRUSADER_MAIL_SECRET_KEY": SECRET, "SENDGRID_API_KEY": "SG.not-used"}
        self.prepare("subscribers", "add", ANN, "--name", "Ann")
        self.prepare("subscribers", "add", BOB)

    def prepare(self, *args: str) -> None:
        """A step before the command under test, run in this process (quicker)."""
        result = CliRunner().invoke(cli, ["--config", str(self.config), *args])
        assert result.exit_code == 0, (args, result.output, result.exception)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), "--config", str(self.root / "crusader-mail.toml"), *args],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", **self.env},
            cwd=self.root,
            check=False,
            timeout=120,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        """``args`` run with ``--json``: exactly one JSON document on stdout."""
        out = self.ok(*args, "--json")
        try:
            return json.loads(out)
        except json.JSONDecodeError as error:
            raise AssertionError(
                f"{' '.join(args)} --json printed more than JSON: {out!r}"
            ) from error

    def masked(self, *args: str) -> Any:
        """Like :meth:`json`, and no reader's full address anywhere in stdout."""
        out = self.ok(*args, "--json")
        for address in (ANN, BOB, "carol.cole@example.com", "jane@reader.example"):
            assert address not in out, (args, out)
        return json.loads(out)


def config_check(site: Site) -> None:
    data = site.json("config", "check")
    assert data["config_file"].endswith("crusader-mail.toml")


def fetch(site: Site) -> None:
    data = site.json("fetch")
    assert [feed["status"] for feed in data["feeds"]] == ["ok"]


def preview(site: Site) -> None:
    site.prepare("fetch")
    data = site.json("preview", "--posts", "2")
    assert len(data["posts"]) == 2
    assert Path(data["html"]).is_file()


def send(site: Site) -> None:
    site.prepare("fetch", "--include-backlog", "2")
    data = site.masked("send", "--dry-run")
    assert data["recipients"] == 2


def run(site: Site) -> None:
    data = site.masked("run", "--dry-run", "--include-backlog", "2")
    assert data["send"]["recipients"] == 2


def inbox_process(site: Site) -> None:
    mail = site.root / "subscribe.eml"
    mail.write_bytes(
        b"From: Jane <jane@reader.example>\r\nTo: news+subscribe@example.com\r\n"
        b"Subject: subscribe\r\nMessage-ID: <join-1@reader.example>\r\n\r\nSign me up\r\n"
    )
    data = site.masked("inbox", "process", str(mail))
    assert [action["command"] for action in data["actions"]] == ["subscribe"]
    assert data["replies"]["failed"] == 1  # SendGrid is nowhere: the confirmation stays queued


def subscribers_add(site: Site) -> None:
    data = site.masked("subscribers", "add", "carol.cole@example.com", "--name", "Carol")
    assert data == {
        "email": "c•••@example.com",
        "added": True,
        "status": "active",
        "name_added": False,
    }
    again = site.masked("subscribers", "add", "carol.cole@example.com")
    assert (again["added"], again["status"]) == (False, "active")


def subscribers_remove(site: Site) -> None:
    data = site.masked("subscribers", "remove", ANN)
    assert data == {"email": "a•••@example.com", "status": "unsubscribed", "was": "active"}
    forgot = site.masked("subscribers", "remove", BOB, "--forget")
    assert (forgot["email"], forgot["erased"]) == ("b•••@example.com", True)
    assert forgot["other_places"]


def subscribers_list(site: Site) -> None:
    data = site.json("subscribers", "list")  # the list itself: addresses whole, as the table
    assert [reader["email"] for reader in data["subscribers"]] == [ANN, BOB]


def subscribers_import(site: Site) -> None:
    export = site.root / "members.csv"
    export.write_text(
        "Email Address,First Name,Last Name,UNSUB_TIME\n"
        "carol.cole@example.com,Carol,Cole,\n"
        f"{BOB},Bob,Baker,2024-01-02 10:00:00\n"
    )
    data = site.masked("subscribers", "import", str(export))
    assert data["columns"] == {
        "email": "Email Address",
        "name": ["First Name", "Last Name"],
        "status": ["UNSUB_TIME"],
    }
    assert (data["added"], data["left"]["now_left"]) == (1, {"unsubscribed": 1})
    site.prepare("subscribers", "export", "--out", str(site.root / "all.csv"))
    restored = site.masked("subscribers", "import", "--restore", "all.csv")
    assert restored == {"file": "all.csv", "restored": 3}


def subscribers_export(site: Site) -> None:
    data = site.json("subscribers", "export")  # like `list --json`: the list itself
    assert [reader["email"] for reader in data["subscribers"]] == [ANN, BOB]
    written = site.json("subscribers", "export", "--out", "readers.csv")
    assert written == {"exported": 2, "what": "readers", "out": "readers.csv"}
    assert (site.root / "readers.csv").read_text().count("\n") == 3
    history = site.json("subscribers", "export", "--history")
    assert history["count"] == len(history["events"]) >= 2
    assert {event["email"] for event in history["events"]} == {ANN, BOB}


def subscribers_stats(site: Site) -> None:
    assert site.json("subscribers", "stats")["total"] == 2


def subscribers_tidy(site: Site) -> None:
    assert site.json("subscribers", "tidy") == {"changed": False}


def archive_build(site: Site) -> None:
    site.prepare("fetch", "--include-backlog", "2")
    write = site.root / "crusader-mail.toml"
    write.write_text(
        write.read_text().replace(
            "[newsletter]\n", '[newsletter]\narchive_url = "https://blog.example/archive/"\n'
        )
    )
    data = site.json("archive", "build")
    assert data["issues"] == 0  # nothing sent yet: an empty archive, its index and feed


def snippet(site: Site) -> None:
    write = site.root / "crusader-mail.toml"
    write.write_text(
        write.read_text().replace(
            "[newsletter]\n", '[newsletter]\nconfirm_url = "https://news.example/confirm"\n'
        )
    )
    data = site.json("snippet")
    assert data["action"] == "https://news.example/subscribe"
    assert 'action="https://news.example/subscribe"' in data["html"]


def serve(site: Site) -> None:
    """``serve --json`` says where it listens in one JSON line, and is listening then."""
    command = [str(CLI), "--config", str(site.root / "crusader-mail.toml"), "serve"]
    child = subprocess.Popen(
        [*command, "--same-host", "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"PATH": "/usr/bin:/bin", **site.env},
        cwd=site.root,
    )
    assert child.stdout is not None
    try:
        data = json.loads(child.stdout.readline())
        assert data["store"] == "files"
        assert data["listening"].startswith("http://127.0.0.1:")
        page = httpx.get(data["listening"] + "/unsubscribe", timeout=30)
        assert page.status_code == 400  # a page answered: no token given
    finally:
        child.terminate()
        child.wait(timeout=30)
        child.stdout.close()


CASES: dict[str, Callable[[Site], None]] = {
    "config check": config_check,
    "fetch": fetch,
    "preview": preview,
    "send": send,
    "run": run,
    "inbox process": inbox_process,
    "subscribers add": subscribers_add,
    "subscribers remove": subscribers_remove,
    "subscribers list": subscribers_list,
    "subscribers import": subscribers_import,
    "subscribers export": subscribers_export,
    "subscribers stats": subscribers_stats,
    "subscribers tidy": subscribers_tidy,
    "serve": serve,
    "archive build": archive_build,
    "snippet": snippet,
}


def on_database(site: Site, url: str) -> str:
    """``site``'s commands on the PostgreSQL database at ``url``; where they name it."""
    site.env["CRUSADER_MAIL_DATABASE_URL"] = url
    return url.removeprefix("postgresql://postgres@")


def db_upgrade(site: Site, url: str) -> None:
    where = on_database(site, url)
    latest = schema.latest()
    every = [f"{m.version:04d}_{m.name}" for m in schema.migrations()]
    first = site.json("db", "upgrade")
    assert first == {"where": where, "before": None, "after": latest, "applied": every}
    again = site.json("db", "upgrade")
    assert again == {"where": where, "before": latest, "after": latest, "applied": []}


def db_status(site: Site, url: str) -> None:
    where = on_database(site, url)
    latest = schema.latest()

    def refused() -> Any:
        """``db status --json`` on a schema it cannot use: the object, then exit 2 and one line."""
        done = site.run("db", "status", "--json")
        assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
        assert "run `crusader-mail db upgrade`" in done.stderr
        return json.loads(done.stdout)

    assert refused() == {"where": where, "version": None, "latest": latest, "ok": False}
    site.ok("db", "upgrade")
    assert site.json("db", "status") == {
        "where": where,
        "version": latest,
        "latest": latest,
        "ok": True,
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = %s", [latest])
    older = {"where": where, "version": latest - 1, "latest": latest, "ok": False}
    assert refused() == older


DATABASE_CASES: dict[str, Callable[[Site, str], None]] = {
    "db upgrade": db_upgrade,
    "db status": db_status,
}
"""Commands of the PostgreSQL store: each gets a database without a schema."""


def test_every_command_is_checked_here() -> None:
    assert set(leaf_commands()) == set(CASES) | set(DATABASE_CASES) | set(EXEMPT)


@pytest.mark.parametrize("name", sorted(set(leaf_commands()) - set(EXEMPT)))
def test_every_command_has_a_json_option(name: str) -> None:
    command = find(name)
    assert any("--json" in param.opts for param in command.params), f"{name} has no --json"


@pytest.mark.parametrize("name", sorted(CASES))
def test_json_output(name: str, clean_env: Path) -> None:
    CASES[name](Site(clean_env / "site"))


@pytest.mark.parametrize("name", sorted(DATABASE_CASES))
def test_json_output_on_a_database(name: str, clean_env: Path, empty_database_url: str) -> None:
    DATABASE_CASES[name](Site(clean_env / "site"), empty_database_url)
