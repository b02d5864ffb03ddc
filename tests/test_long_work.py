"""Long work shows progress, and stdout carries only the result: through the real commands.

Progress goes to stderr: a rich bar when stderr is a terminal (a pseudo-terminal here), else a
line every few seconds of the clock's time (a clock that moves on each reading stands for a
slow run; nothing here measures time). Notes and warnings go to stderr with ``--json`` too, so
stdout is one JSON document. ``preview --serve`` says in the terminal when it rendered again,
and shows a template mistake there too."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from click.testing import CliRunner, Result
from peers.feed_server import FeedServer

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.settings import LoadedSettings, Settings
from tests.support.feeds import FEED_SERVER_TOML
from tests.support.sending import make_readers, make_settings

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("crusader-mail")
EXAMPLE = REPO / "examples" / "biz-crusader" / "feed.xml"
WORDPRESS = (Path(__file__).parent / "fixtures" / "feeds" / "wordpress.xml").read_bytes()
PROGRESS = re.compile(r"^crusader-mail: (reading feeds|sending): [\d,]+ of [\d,]+ \w+ \(\d+%\), ")


class SlowClock(FixedClock):
    """A clock three seconds further on at every reading: each step looks slow."""

    def now(self) -> datetime:
        self.advance(timedelta(seconds=3))
        return super().now()


def invoke(app: AppContext, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=app)


def one_json(result: Result) -> object:
    """The whole of stdout is one JSON document."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def site(tmp_path: Path, feeds: list[str], readers: int = 0) -> Settings:
    settings = make_settings(tmp_path, secret=None, sendgrid={"batch_size": 10}).model_copy(
        update={"feeds": feeds, "templates_dir": REPO / "templates"}
    )
    if readers:
        make_readers(settings, FixedClock(datetime(2026, 11, 1, tzinfo=UTC)), readers)
    return settings


# --- progress lines in a log --------------------------------------------------------------------


def test_fetch_prints_a_progress_line_every_few_seconds_in_a_log(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feeds = [feed_server.add(f"/{n}.xml", WORDPRESS) for n in range(4)]
    path = tmp_path / "crusader-mail.toml"
    path.write_text(f'feeds = {json.dumps(feeds)}\nstate_dir = "state"\n' + FEED_SERVER_TOML)
    slow = invoke(AppContext(config=path, clock=SlowClock(datetime.now(UTC))), "fetch", "--json")
    assert len(one_json(slow)["feeds"]) == 4  # type: ignore[index]
    lines = slow.stderr.splitlines()
    assert lines, "a slow fetch says how far it got"
    assert all(PROGRESS.match(line) for line in lines), lines
    assert lines[-1].startswith("crusader-mail: reading feeds: 4 of 4 feeds (100%), ")
    assert sum("4 of 4 feeds" in line for line in lines) == 1  # the final count once

    quick = invoke(AppContext(config=path, clock=FixedClock(datetime.now(UTC))), "fetch", "--json")
    assert quick.exit_code == 0
    assert quick.stderr == ""  # work done within the interval prints nothing


def test_a_dry_run_prints_sending_progress_and_its_notes_on_stderr(tmp_path: Path) -> None:
    settings = site(tmp_path, [str(EXAMPLE)], readers=30)
    app = AppContext(clock=SlowClock(datetime.now(UTC)), _loaded=LoadedSettings(settings, None, {}))
    result = invoke(app, "run", "--dry-run", "--json", "--include-backlog", "1")
    report = one_json(result)
    assert report["send"]["recipients"] == 30  # type: ignore[index]
    lines = result.stderr.splitlines()
    sending = [line for line in lines if line.startswith("crusader-mail: sending: ")]
    assert sending
    assert all(PROGRESS.match(line) for line in sending)
    assert sending[-1].startswith("crusader-mail: sending: 30 of 30 readers (100%), ")
    assert any(line.startswith("crusader-mail: reading feeds: 1 of 1 feeds") for line in lines)


def test_send_json_keeps_its_notes_for_stderr(tmp_path: Path, clock: FixedClock) -> None:
    """Without a secret key a dry run signs with a throwaway key: said on stderr, --json too."""
    settings = site(tmp_path, [str(EXAMPLE)], readers=3)
    app = AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {}))
    assert invoke(app, "fetch", "--include-backlog", "1").exit_code == 0
    app = AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {}))
    result = invoke(app, "send", "--dry-run", "--json")
    report = one_json(result)
    assert report["recipients"] == 3  # type: ignore[index]
    assert "crusader-mail: note: set CRUSADER_MAIL_SECRET_KEY to sign real unsubscribe links" in (
        result.stderr
    )
    table = invoke(
        AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {})), "send", "--dry-run"
    )
    assert "note:" not in table.stdout  # the table is the result; the notes are not
    assert "crusader-mail: note: " in table.stderr


# --- a bar on a terminal ------------------------------------------------------------------------


def test_on_a_terminal_fetch_draws_a_rich_bar(tmp_path: Path) -> None:
    config = tmp_path / "crusader-mail.toml"
    config.write_text(f'feeds = ["{EXAMPLE}"]\nstate_dir = "state"\n')
    leader, follower = pty.openpty()
    try:
        child = subprocess.run(
            [str(CLI), "--config", str(config), "fetch", "--json"],
            stdout=subprocess.PIPE,
            stderr=follower,
            env={"PATH": "/usr/bin:/bin", "TERM": "xterm", "COLUMNS": "80"},
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while select.select([leader], [], [], 0)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert child.returncode == 0, drawn
    json.loads(child.stdout)  # the bar never touches stdout
    text = drawn.decode("utf-8", "replace")
    assert "reading feeds" in text
    assert "1/1" in text  # rich's completed/total column
    assert "crusader-mail: reading feeds:" not in text  # the log lines are for logs


# --- preview --serve in the terminal ------------------------------------------------------------


class Said:
    """The lines a child writes to one stream, read by a thread of their own (so nothing waits
    in a buffer that ``select`` cannot see)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def until(self, wanted: str, deadline: float = 60.0) -> str:
        """The next line holding ``wanted`` (bounded; never a timing check)."""
        end = time.monotonic() + deadline
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if wanted in line:
                return line
        raise AssertionError(f"never said {wanted!r}: {self.seen}")


def test_preview_serve_says_when_it_rendered_again_and_shows_template_errors(
    tmp_path: Path,
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    config = tmp_path / "crusader-mail.toml"
    config.write_text(
        f'feeds = ["{EXAMPLE}"]\ntemplates_dir = "{templates}"\n'
        '[newsletter]\nname = "Biz Crusader"\nfrom_email = "news@bizcrusader.example"\n'
    )
    child = subprocess.Popen(
        [str(CLI), "--config", str(config), "preview", "--serve", "--port", "0", "--posts", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    out, err = Said(child.stdout), Said(child.stderr)
    try:
        out.until("Serving the preview on http://127.0.0.1:")
        footer = templates / "parts" / "footer.html"
        footer.write_text(footer.read_text() + "\n<p>Edited footer</p>\n")
        said = err.until("changed; ")
        assert re.fullmatch(
            r"crusader-mail: \d\d:\d\d:\d\d footer\.html changed; rendered again: '.+', "
            r"[\d,]+ bytes",
            said,
        ), said
        footer.write_text("{% if %}\n")
        said = err.until("changed; ")
        assert re.match(r"crusader-mail: \d\d:\d\d:\d\d footer\.html changed; not rendered: ", said)
        assert "footer.html" in said.split("not rendered: ", 1)[1]  # the template's own error
        assert said.endswith(
            "(the page shows it too; the last good render stays until it is fixed)"
        )
    finally:
        child.terminate()
        child.communicate(timeout=30)
