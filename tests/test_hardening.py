"""Findings of the security and privacy review, one test each (see also test_server.py for the
web app's body caps, security headers and event timestamps)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crusader_mail import pipeline
from crusader_mail.cli import cli
from crusader_mail.cli import inbox as inbox_cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import Clock, FixedClock
from crusader_mail.compose.composer import Composer
from crusader_mail.delivery.client import ClientFactory
from crusader_mail.delivery.dry_run import GITIGNORE
from crusader_mail.delivery.engine import deliver
from crusader_mail.delivery.transport import DryRunTransport
from crusader_mail.errors import ConfigError, ImportRejected, InboxError
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.feeds.sanitize import sanitize_html
from crusader_mail.inbox.process import Action, InboxReport
from crusader_mail.inbox.sources import _one_line
from crusader_mail.models import Post
from crusader_mail.settings import LoadedSettings, Settings, load_settings
from crusader_mail.storage.files.subscribers import SubscriberList
from crusader_mail.subscriptions.imports import read_import
from crusader_mail.util.masking import mask_addresses
from tests.support.inbox import mail, make_ctx, run
from tests.support.inbox import make_settings as inbox_settings
from tests.support.sending import ledgers, make_issue, make_readers, make_settings, send_issue

REPO = Path(__file__).resolve().parent.parent
BRACKETS = "[/bold] Ten [red]tips"  # rich would read these as markup and crash (MarkupError)

# --- privacy: no full address in messages ------------------------------------------------------


def test_mask_addresses_masks_every_address_in_free_text() -> None:
    text = "550 5.1.1 <jane.doe@example.com>: unknown; cc bob@example.org, ok"
    masked = mask_addresses(text)
    assert "jane.doe@" not in masked
    assert "bob@" not in masked
    assert "j•••@example.com" in masked
    assert "b•••@example.org" in masked
    assert mask_addresses(masked) == masked  # masking twice changes nothing


def test_import_without_header_does_not_print_the_first_address(tmp_path: Path) -> None:
    headerless = tmp_path / "readers.csv"
    headerless.write_text("carol.secret@example.com,Carol\ndave@example.com,Dave\n")
    with pytest.raises(ImportRejected) as caught:
        read_import(headerless)
    assert "carol.secret@" not in str(caught.value)
    assert "c•••@example.com" in str(caught.value)
    assert "no 'email' column" in str(caught.value)


def test_inbox_results_never_quote_an_address_from_a_header(
    tmp_path: Path, clock: FixedClock
) -> None:
    ctx = make_ctx(inbox_settings(tmp_path), clock)
    message = mail(
        subject="Out of office",
        headers={"Auto-Submitted": "auto-replied by jane.doe@example.com"},
    )
    report = run(ctx, [message])
    shown = json.dumps(report.as_json(), ensure_ascii=False)
    assert report.actions[0].command == "auto-reply"
    assert "jane.doe@" not in shown
    assert "j•••@example.com" in shown


def test_imap_errors_are_masked() -> None:
    error = OSError("LOGIN failed for jane.doe@example.com")
    line = _one_line(error)
    assert "jane.doe@" not in line
    assert "j•••@example.com" in line
    assert isinstance(InboxError(line), InboxError)


# --- secrets ------------------------------------------------------------------------------------


def test_a_short_secret_key_is_a_config_error_not_a_traceback(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRUSADER_MAIL_SECRET_KEY", "short-key")
    with pytest.raises(ConfigError, match="at least 16 characters") as caught:
        load_settings(None)
    assert "short-key" not in str(caught.value)


def test_short_secret_key_through_the_real_command_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "crusader-mail.toml"
    config.write_text('feeds = []\n[newsletter]\nfrom_email = "news@example.com"\n')
    message = tmp_path / "one.eml"
    message.write_bytes(mail(subject="subscribe").data)
    env = {
        "PATH": "/usr/bin:/bin",
        "CRUSADER_MAIL_SECRET_KEY": "tiny-secret",
        "SENDGRID_API_KEY": "SG.not-used",
    }
    result = subprocess.run(
        [
            str(REPO / ".venv/bin/crusader-mail"),
            "--config",
            str(config),
            "inbox",
            "process",
            str(message),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "secret_key (from env CRUSADER_MAIL_SECRET_KEY): too short" in result.stderr
    assert "tiny-secret" not in result.stderr + result.stdout


# --- header injection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("from_name", "Biz\r\nBcc: everyone@example.com"),
        ("name", "Biz\nCrusader"),
        ("reply_to", "news@example.com\r\nX-Evil: 1"),
        ("list_id", "News <list.example.com>\n"),
    ],
)
def test_header_settings_must_be_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(f"CRUSADER_MAIL_NEWSLETTER__{key.upper()}", value)
    with pytest.raises(ConfigError, match=f"newsletter.{key}.*one line"):
        load_settings(None)


def test_a_feed_title_with_line_breaks_makes_a_one_line_subject(
    tmp_path: Path, clock: FixedClock
) -> None:
    settings = Settings(templates_dir=REPO / "templates")
    now = clock.now()
    post = Post(
        id="https://blog.example/1",
        title="Sale\r\nBcc: all@example.com\u2028X-Evil: 1",
        link="https://blog.example/1",
        published=now,
        updated=now,
        excerpt="Short.",
        feed="https://blog.example/feed",
        first_seen=now,
    )
    issue = Composer(settings).compose([post], [], "2026-11-23-abcdef12", now)
    assert not re.search(r"[\r\n\u2028]", issue.subject)
    assert issue.subject.startswith("Sale Bcc:")


# --- rich markup in output ----------------------------------------------------------------------


def test_config_check_prints_brackets_in_values_as_text(clean_env: Path, clock: Clock) -> None:
    settings = Settings(newsletter={"name": BRACKETS})
    app = AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {}))
    result = CliRunner().invoke(cli, ["config", "check"], obj=app)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "[/bold] Ten" in result.output


def test_inbox_table_prints_brackets_from_mail_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    report = InboxReport(1, [Action("<x@y>", "auto-reply", f"ignored: {BRACKETS}", "a[/x].eml")])
    inbox_cli._table(report)
    out = capsys.readouterr().out
    assert "[/bold]" in out
    assert "a[/x].eml" in out


def test_send_dry_run_prints_a_subject_with_brackets(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def send_stage(
        settings: Settings,
        clock: Clock,
        factory: ClientFactory | None,
        **options: Any,
    ) -> pipeline.SendRun:
        options.pop("progress", None)
        options.pop("fetch_progress", None)
        issue = make_issue(subject=BRACKETS)
        return pipeline.SendRun([send_issue(issue, settings, clock, factory, **options)])

    monkeypatch.setattr(pipeline, "send_stage", send_stage)
    settings = make_settings(tmp_path, secret=None)
    make_readers(settings, clock, 2)
    app = AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {}))
    result = CliRunner().invoke(cli, ["send", "--dry-run"], obj=app)
    assert result.exception is None, result.output
    assert f"subject: {BRACKETS}" in result.output


# --- the dry-run outbox stays out of git --------------------------------------------------------


def test_outbox_ignores_itself_wherever_it_is(tmp_path: Path, clock: FixedClock) -> None:
    settings = make_settings(tmp_path, secret=None)
    inside_state = settings.model_copy(update={"outbox_dir": settings.state_dir / "outbox"})
    readers: SubscriberList = make_readers(inside_state, clock, 3)
    deliver(
        make_issue(),
        readers,
        ledgers(inside_state),
        DryRunTransport(inside_state, clock),
        inside_state,
        clock,
    )
    outbox = inside_state.outbox_dir
    assert (outbox / "request-0001.json").is_file()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    status = subprocess.run(
        ["git", "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "outbox" not in status
    assert (outbox / GITIGNORE).read_text().splitlines()[-1] == "*"


# --- hostile feed HTML end to end ---------------------------------------------------------------

ACTIVE = re.compile(
    r"<(script|iframe|form|object|embed|applet|frame|base)\b"
    r"|<[^>]*\son[a-z]+\s*="
    r"|(href|src|action|background)\s*=\s*[\"']?\s*(javascript|vbscript|data):",
    re.IGNORECASE,
)


@pytest.mark.corpus
def test_nasty_corpus_composes_into_clean_html(corpus: Path, clock: FixedClock) -> None:
    """Every entry of ../shared/corpus/nasty, sanitized as the reader does and composed in full:
    no active content in the newsletter, and the guards pass."""
    import gzip

    import feedparser

    settings = Settings(
        templates_dir=REPO / "templates",
        compose={"full_content": True, "max_html_bytes": 50 * 1024 * 1024},
    )
    now = clock.now().astimezone(UTC)
    posts = []
    fetch = settings.fetch
    with make_client(fetch) as client:
        for path in sorted((corpus / "nasty").iterdir()):
            posts += read_feed(str(path), client, fetch, None, clock).posts
            raw = path.read_bytes()
            raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
            if b"<!ENTITY" in raw:
                continue  # the reader's own DOCTYPE defusing is tested in test_corpus_feeds
            parsed = feedparser.parse(raw, sanitize_html=False, resolve_relative_uris=False)
            for index, entry in enumerate(parsed.entries):
                markup = " ".join(
                    [c.get("value", "") for c in entry.get("content", [])]
                    + [entry.get("summary", "")]
                )
                safe = sanitize_html(markup, "https://blog.example/")
                posts.append(
                    Post(
                        id=f"{path.name}#{index}",
                        title=str(entry.get("title") or "untitled")[:200] or "untitled",
                        link="https://blog.example/post",
                        published=now,
                        updated=now,
                        content_html=safe,
                        summary_html=safe,
                        excerpt="An excerpt.",
                        feed=str(path),
                        first_seen=now,
                    )
                )
    assert len(posts) > 300
    composer = Composer(settings)
    for start in range(0, len(posts), 25):
        issue = composer.compose(posts[start : start + 25], [], f"2026-11-23-{start:08d}", now)
        found = ACTIVE.search(issue.html)
        assert found is None, issue.html[max(0, found.start() - 80) : found.end() + 80]


# --- serve: real process, port in use ----------------------------------------------------------


def _serve_env(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    config = tmp_path / "crusader-mail.toml"
    config.write_text(
        f'templates_dir = "{REPO / "templates"}"\n[newsletter]\nname = "Biz Crusader"\n'
        'from_email = "news@example.com"\n'
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "CRUSADER_MAIL_SECRET_KEY": "serve-test-secret-key-0123456789",
        "SENDGRID_API_KEY": "SG.not-used",
    }
    command = [str(REPO / ".venv/bin/crusader-mail"), "--config", str(config), "serve"]
    return [*command, "--same-host"], env


def test_serve_answers_over_real_http_and_stops_cleanly(tmp_path: Path) -> None:
    import httpx

    command, env = _serve_env(tmp_path)
    child = subprocess.Popen(
        [*command, "--port", "0"], stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found is not None, line
        assert found.group(1) != "0"
        with httpx.Client(base_url=found.group(0), timeout=10) as http:
            page = http.get("/")
            assert page.status_code == 200
            assert "Biz Crusader" in page.text
            assert page.headers["referrer-policy"] == "no-referrer"
    finally:
        child.terminate()
        child.wait(timeout=20)
        if child.stderr is not None:
            child.stderr.close()


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import socket

    command, env = _serve_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*command, "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"crusader-mail: error: serve: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
