"""A new editor's first hour, through the real command: the demo's newsletter filled in for a
sample reader, the secrets ``serve`` needs, the exit codes, shell completion, and ``make demo``
on a fresh virtualenv that gets only what the demo needs."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from crusader_mail.delivery.dry_run import SAMPLE_READER
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.commands import NOWHERE, REPO, SECRET, demo_copy, write_site_config

CLI = REPO / ".venv" / "bin" / "crusader-mail"
README = (REPO / "README.md").read_text(encoding="utf-8")
PATH = {"PATH": "/usr/bin:/bin"}


def crusader_mail(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**PATH, **(env or {})},
        check=False,
        timeout=120,
    )


def real_readers(folder: Path) -> list[str]:
    rows = (folder / "subscribers" / "subscribers.csv").read_text().splitlines()[2:]
    return [row.split(",")[0] for row in rows if row]


# --- the demo's newsletter --------------------------------------------------------------------


def test_the_demo_newsletter_is_filled_for_a_sample_reader(tmp_path: Path) -> None:
    copy = demo_copy(tmp_path / "demo")
    done = crusader_mail("run", "--dry-run", "--include-backlog", "3", cwd=copy)
    assert done.returncode == 0, done.stderr
    outbox = copy / "outbox"
    html = (outbox / "newsletter.html").read_text()
    text = (outbox / "newsletter.txt").read_text()
    for part in (html, text, (outbox / "subject.txt").read_text()):
        assert "[[" not in part
    assert SAMPLE_READER.email in html
    assert SAMPLE_READER.email in text
    # the example asks SendGrid for its one-click link: the newsletter shows its stand-in, as
    # the .eml does
    assert "https://sendgrid.invalid/unsubscribe-link-added-by-sendgrid" in html
    readers = real_readers(copy)
    assert len(readers) >= 2
    for address in readers:  # the artifact the workflow uploads carries nobody real
        assert address not in html
        assert address not in text
    eml = message_from_bytes((outbox / "first-reader.eml").read_bytes(), policy=policy.default)
    assert eml["To"].addresses[0].addr_spec in readers  # the .eml is a real reader's copy


def test_the_sample_link_has_the_real_shape_and_unsubscribes_nobody(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "crusader-mail.toml").write_text(
        f'templates_dir = "{REPO / "templates"}"\n'
        f'feeds = ["{REPO / "examples" / "biz-crusader" / "feed.xml"}"]\n'
        'outbox_dir = "outbox"\n'
        '[newsletter]\nname = "Biz Crusader"\nfrom_email = "news@example.com"\n'
        'unsubscribe_url = "https://mail.example.org/unsubscribe"\n'
        f'[sendgrid]\napi_url = "{NOWHERE}"\n'
        "[server]\nsame_host = true\n"  # our one-click link counts
    )
    env = {"CRUSADER_MAIL_SECRET_KEY": SECRET}
    added = crusader_mail("subscribers", "add", "first.reader@example.net", cwd=site, env=env)
    assert added.returncode == 0, added.stderr
    done = crusader_mail("run", "--dry-run", "--include-backlog", "1", cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    html = (site / "outbox" / "newsletter.html").read_text()
    eml = (site / "outbox" / "first-reader.eml").read_bytes()
    link = re.compile(r"https://mail\.example\.org/unsubscribe\?token=([a-z2-7]+)")
    sample = link.search(html)
    assert sample is not None, "the sample reader's link is in the newsletter"
    reader = link.search(message_from_bytes(eml, policy=policy.default).as_string())
    assert reader is not None
    signer, now = Signer(SECRET), datetime.now(UTC)
    assert signer.matches(Purpose.UNSUBSCRIBE, reader.group(1), "first.reader@example.net", now)
    assert not signer.matches(Purpose.UNSUBSCRIBE, sample.group(1), SAMPLE_READER.email, now)
    assert "first.reader@example.net" not in html


# --- serve's secrets --------------------------------------------------------------------------


def test_serve_needs_the_secret_key_and_the_api_key_and_nothing_else(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    write_site_config(site)
    both = {"CRUSADER_MAIL_SECRET_KEY": SECRET, "SENDGRID_API_KEY": "SG.not-used"}
    serve = ("serve", "--same-host", "--port", "0", "--json")
    for missing in both:
        env = {k: v for k, v in both.items() if k != missing}
        done = crusader_mail(*serve, cwd=site, env=env)
        assert done.returncode == 2, done.stderr
        assert missing in done.stderr
        assert done.stdout == ""
    # the two and nothing more (no IMAP password, no inbound secret): it listens
    child = subprocess.Popen(
        [str(CLI), *serve],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=site,
        env={**PATH, **both},
    )
    assert child.stdout is not None
    try:
        assert json.loads(child.stdout.readline())["listening"].startswith("http://127.0.0.1:")
    finally:
        child.terminate()
        child.wait(timeout=30)
        child.stdout.close()
    section = README[README.index("**The secrets `serve` needs.**") :].split("\n\n")[0]
    for name in (*both, "CRUSADER_MAIL_IMAP__PASSWORD", "CRUSADER_MAIL_SERVER__INBOUND_SECRET"):
        assert name in section
    assert "does not need\n`CRUSADER_MAIL_IMAP__PASSWORD`" in section


# --- exit codes -------------------------------------------------------------------------------


def test_the_readme_and_docs_list_every_exit_code() -> None:
    table = README[README.index("### Exit codes") :].split("\n\n")[1]
    codes = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert codes == ["0", "1", "2", "130"]
    assert "unknown command or option" in table
    assert "a bad or missing setting" in table
    docs = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for code in ("0 done", "1 something failed", "2 a configuration or usage error", "130"):
        assert code in docs


@contextmanager
def interrupted_import(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """``subscribers import`` of a FIFO nobody writes to: it waits in ``read()`` for good."""
    fifo = folder / "readers.csv"
    os.mkfifo(fifo)
    child = subprocess.Popen(
        [str(CLI), "subscribers", "import", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder,
        env=PATH,
    )
    writer = None
    try:
        while writer is None:  # opens once the command has opened the FIFO to read it
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                if child.poll() is not None:
                    raise AssertionError(child.communicate()) from None
                time.sleep(0.05)
        yield child
    finally:
        if writer is not None:
            os.close(writer)
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def test_exit_codes_of_the_real_command(tmp_path: Path) -> None:
    (tmp_path / "crusader-mail.toml").write_text('subscribers_dir = "people"\n')
    usage = crusader_mail("subscribers", "add", "--no-such-option", cwd=tmp_path)
    assert usage.returncode == 2
    assert "Usage: crusader-mail subscribers add" in usage.stderr
    (tmp_path / "bad.toml").write_text("subscribers_dri = 'people'\n")
    setting = crusader_mail("--config", "bad.toml", "subscribers", "stats", cwd=tmp_path)
    assert setting.returncode == 2, setting.stderr
    assert "subscribers_dri" in setting.stderr
    assert "bad.toml" in setting.stderr
    failed = crusader_mail("subscribers", "import", "missing.csv", cwd=tmp_path)
    assert (failed.returncode, failed.stderr) == (
        1,
        "crusader-mail: error: missing.csv: no such file\n",
    )
    with interrupted_import(tmp_path) as child:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 130
        assert err.strip() == "crusader-mail: interrupted"  # after click's newline
        assert out == ""


# --- shell completion -------------------------------------------------------------------------


def test_shell_completion_works_as_the_readme_says(tmp_path: Path) -> None:
    line = 'eval "$(_CRUSADER_MAIL_COMPLETE=bash_source crusader-mail)"'
    assert line in README
    shell = subprocess.run(
        ["bash", "-c", f"{line} && complete -p crusader-mail"],
        capture_output=True,
        text=True,
        env={"PATH": f"{CLI.parent}:/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip().endswith("-F _crusader_mail_completion crusader-mail")
    answer = crusader_mail(
        cwd=tmp_path,
        env={
            "_CRUSADER_MAIL_COMPLETE": "bash_complete",
            "COMP_WORDS": "crusader-mail subscribers imp",
            "COMP_CWORD": "2",
        },
    )
    assert (answer.returncode, answer.stdout) == (0, "plain,import\n")
    for shell_name in ("zsh_source", "fish_source"):
        assert f"_CRUSADER_MAIL_COMPLETE={shell_name} crusader-mail" in README


# --- make demo on a fresh virtualenv ----------------------------------------------------------


def working_tree(into: Path) -> None:
    """The repository as it is now (tracked and new files, not ignored ones), as a clone
    would have it once the work is committed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        cwd=REPO,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_make_demo_on_a_fresh_clone_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    working_tree(clone)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("CRUSADER_MAIL_", "SENDGRID_", "VIRTUAL_ENV", "PYTHON", "MAKE", "MFLAGS")
        )
    }
    python = shutil.which("python3.11") or sys.executable
    done = subprocess.run(
        ["make", "demo", f"PYTHON={python}"],
        capture_output=True,
        text=True,
        cwd=clone,
        env=env,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "newsletter: " in done.stdout
    assert "dry run: nothing was sent and no state was changed" in done.stdout
    bin_ = clone / ".venv" / "bin"
    assert (bin_ / "crusader-mail").is_file()
    for tool in ("ruff", "mypy", "zizmor", "actionlint", "pytest"):
        assert not (bin_ / tool).exists(), f"make demo installed {tool}"
    assert (clone / ".venv" / ".installed").is_file()
    assert not (clone / ".venv" / ".installed-dev").exists()
    html = (clone / "outbox" / "newsletter.html").read_text()
    assert "[[" not in html
    assert SAMPLE_READER.email in html
