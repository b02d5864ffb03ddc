"""What the tool shows must not leak or be steered: secrets are refused in the committed config
file, the job summary shows feed text as text and feed URLs masked, and Message-IDs (whose
left part may be an address) are masked wherever a report shows them."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from crusader_mail.cli.run import shown_json
from crusader_mail.models import FeedReport, SendReport
from crusader_mail.pipeline import IssueSummary, RunReport
from crusader_mail.pipeline.summary import markdown_summary
from crusader_mail.settings import Settings, secret_keys
from crusader_mail.util.masking import mask_message_id
from tests.support.commands import run_cli

SECRETS = {  # every secret setting, and where it goes instead
    "sendgrid.api_key": "SENDGRID_API_KEY",
    "secret_key": "CRUSADER_MAIL_SECRET_KEY",
    "imap.password": "CRUSADER_MAIL_IMAP__PASSWORD",
    "server.inbound_secret": "CRUSADER_MAIL_SERVER__INBOUND_SECRET",
}
VALUE = "s3cr3t-value-0123456789abcdef"


def test_every_secret_setting_is_known() -> None:
    expected = set(SECRETS) | (
        {"database_url"} if "database_url" in Settings.model_fields else set()
    )
    assert set(secret_keys()) == expected


@pytest.mark.parametrize("key", sorted(SECRETS))
def test_a_secret_in_the_config_file_is_refused_in_one_line(tmp_path: Path, key: str) -> None:
    section, _, name = key.rpartition(".")
    table = f"[{section}]\n" if section else ""
    (tmp_path / "crusader-mail.toml").write_text(
        f'feeds = []\n{table}{name} = "{VALUE}"\n', encoding="utf-8"
    )
    result = run_cli(tmp_path, "config", "check")
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("crusader-mail: error: ")
    assert key in line
    assert SECRETS[key] in line
    assert VALUE not in result.stdout + result.stderr


def test_secrets_from_the_environment_or_dotenv_are_taken(tmp_path: Path) -> None:
    (tmp_path / "crusader-mail.toml").write_text("feeds = []\n", encoding="utf-8")
    (tmp_path / ".env").write_text(f"CRUSADER_MAIL_IMAP__PASSWORD={VALUE}\n", encoding="utf-8")
    result = run_cli(tmp_path, "config", "check", "--json", env={"CRUSADER_MAIL_SECRET_KEY": VALUE})
    assert result.returncode == 0, result.stderr
    assert VALUE not in result.stdout


# --- the job summary ----------------------------------------------------------------------------

TITLE = (
    "[Click here](https://evil.example/x) ![pixel](https://t.example/p.gif) **big** _it_ "
    "`code` <img src=x> ~~gone~~ &amp; \\*"
)


def _report() -> RunReport:
    return RunReport(
        dry_run=False,
        feeds=[
            FeedReport(
                url="https://editor:hunter2@feeds.example/feed.xml?api_key=abc123&page=2",
                status="error",
                error="[login](https://evil.example) failed",
            )
        ],
        issue=IssueSummary(
            issue_id="2026-11-24-abcdef12",
            subject=TITLE,
            posts=["p1"],
            related=[],
            html_bytes=100,
            resumed=False,
            waiting=0,
            notes=[f"switched {TITLE} to an excerpt"],
        ),
        send=SendReport(
            issue="2026-11-24-abcdef12", dry_run=False, recipients=1, delivered=1, requests=1
        ),
        problems=[f"feed title {TITLE}"],
    )


def test_the_job_summary_shows_feed_text_as_text_and_feed_urls_masked() -> None:
    summary = markdown_summary(_report())
    html = MarkdownIt("commonmark").enable("table").enable("strikethrough").render(summary)
    for made in ("<a ", "<img", "<em>", "<s>", "<script"):
        assert made not in html, made
    assert html.count("<strong>") == 1  # ours, around the subject: none from the feed
    assert html.count("<code>") == 1  # ours, around the issue id
    assert html.count("<tr>") == 2  # the header and one feed: no cell broken out of its row
    text = unescape(re.sub(r"<[^>]*>", "", html))
    assert text.count(TITLE) == 3  # the subject, the note and the problem, each as written
    assert "hunter2" not in summary
    assert "abc123" not in summary
    assert "feeds.example/feed.xml" in summary.replace("\\", "")


# --- Message-IDs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_id", "shown"),
    [
        ("<jane.doe@reader.example>", "<j•••@reader.example>"),
        ("<jane.doe@reader.example.1234@mx.example>", "<j•••@mx.example>"),
        ('<"jane doe"@reader.example>', '<"•••@reader.example>'),
        ("jane@reader.example", "j•••@reader.example"),
        ("sha256:0123456789abcdef", "sha256:0123456789abcdef"),
    ],
)
def test_message_ids_are_masked_like_addresses(message_id: str, shown: str) -> None:
    assert mask_message_id(message_id) == shown


def test_run_json_masks_the_inbox_message_ids() -> None:
    report = _report()
    report.inbox = {
        "processed": 1,
        "actions": [
            {"message_id": "<jane.doe@reader.example>", "command": "none", "result": "no reply"}
        ],
    }
    printed = json.dumps(shown_json(report))
    assert "jane.doe" not in printed
    assert json.loads(printed)["inbox"]["actions"][0]["message_id"] == "<j•••@reader.example>"
