"""What the editor reads when SendGrid refuses: its documented answers, from the loopback
SendGrid, through the real ``send`` and ``run`` commands, each with the fix it calls for (an
unverified sender is not a key-scope problem)."""

from __future__ import annotations

from pathlib import Path

import pytest
from peers.sendgrid_server import API_KEY, DOCUMENTED, FIELD_ERRORS, SendGridServer

from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from tests.support.entry import Ran, run_main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "biz-crusader" / "feed.xml"
SECRET = "sendgrid-answers-secret-0123456789"
SCOPE = "check the scope of sendgrid.api_key"


def site(folder: Path, api: SendGridServer) -> Path:
    path = folder / "crusader-mail.toml"
    path.write_text(
        f'feeds = ["{EXAMPLE}"]\ntemplates_dir = "{REPO / "templates"}"\n'
        '[newsletter]\nname = "Biz Crusader"\nfrom_email = "news@bizcrusader.example"\n'
        'postal_address = "12 Market Street"\n'
        f'[sendgrid]\napi_url = "{api.url}"\nmax_retries = 0\nsubscription_tracking = true\n',
        encoding="utf-8",
    )
    return path


def crusader(path: Path, clock: FixedClock, *args: str) -> Ran:
    app = AppContext(config=path, clock=clock)
    env = {"SENDGRID_API_KEY": API_KEY, "CRUSADER_MAIL_SECRET_KEY": SECRET}
    return run_main(*args, obj=app, env=env)


def one_error_line(result: Ran) -> str:
    assert result.code == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("crusader-mail: error: ")
    return line


@pytest.mark.parametrize(
    ("answer", "fix", "not_said"),
    [
        (
            DOCUMENTED["unverified_sender"],
            "newsletter.from_email is not a verified sender of this SendGrid account (the API "
            "key is not the problem): verify that address (Settings > Sender Authentication > "
            "Single Sender Verification) or authenticate its domain (Domain Authentication)",
            SCOPE,
        ),
        (
            DOCUMENTED["forbidden"],
            f"{SCOPE}: it needs the Mail Send permission (Settings > API Keys in SendGrid > "
            "Edit), and Suppressions read for the suppression sync",
            "verified sender",
        ),
        (DOCUMENTED["not_authorized"], f"{SCOPE}: it needs the Mail Send permission", "mistyped"),
        (
            DOCUMENTED["bad_key"],
            "check sendgrid.api_key (SENDGRID_API_KEY): SendGrid does not know this key "
            "(mistyped, deleted or revoked); create one under Settings > API Keys in SendGrid",
            SCOPE,
        ),
        (DOCUMENTED["authorization_required"], "check sendgrid.api_key (SENDGRID_API_KEY)", SCOPE),
        (
            DOCUMENTED["credits"],
            "the SendGrid plan's sending credits are used up: wait until they reset",
            "api_key",
        ),
        (
            DOCUMENTED["too_large"],
            "the request is over SendGrid's 30 MB: lower sendgrid.batch_size, or make the issue "
            "smaller (compose.full_content = false, compose.max_html_bytes)",
            SCOPE,
        ),
        (
            FIELD_ERRORS["sandbox"],
            "look at sendgrid.sandbox_mode (true or false; with true SendGrid checks each "
            "request and delivers nothing)",
            SCOPE,
        ),
        (
            FIELD_ERRORS["asm_group"],
            "sendgrid.asm_group_id must be the id of one of this account's unsubscribe groups "
            "(Suppressions > Unsubscribe Groups), or be left out",
            SCOPE,
        ),
        (FIELD_ERRORS["bad_from"], "look at newsletter.from_email (a verified sender)", SCOPE),
    ],
    ids=[
        "unverified_sender",
        "forbidden",
        "not_authorized",
        "bad_key",
        "authorization_required",
        "credits",
        "too_large",
        "sandbox",
        "asm_group",
        "bad_from",
    ],
)
def test_each_refusal_names_its_fix(
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    answer: tuple[int, str, str | None],
    fix: str,
    not_said: str,
) -> None:
    status, message, field = answer
    sendgrid_server.fail(status, message=message, field=field)
    result = crusader(site(tmp_path, sendgrid_server), clock, "send", "--to", "ed@example.com")
    line = one_error_line(result)
    where = f" (field {field})" if field else ""
    assert line.startswith(
        "crusader-mail: error: SendGrid rejected the test send to e•••@example.com "
        f"(HTTP {status}): {message}{where}; "
    )
    said = line.split(f"{message}{where}; ", 1)[1]
    assert said.startswith(fix)
    assert not_said not in said
    assert result.stdout == ""
    assert sendgrid_server.deliveries == []


def test_a_rate_limit_that_holds_says_to_run_again_later(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    status, message, _ = DOCUMENTED["rate_limited"]
    sendgrid_server.fail(status, message=message)
    result = crusader(site(tmp_path, sendgrid_server), clock, "send", "--to", "ed@example.com")
    assert one_error_line(result) == (
        "crusader-mail: error: SendGrid did not accept the test send to e•••@example.com after "
        "1 attempts (last: HTTP 429); SendGrid's rate limit (HTTP 429) held through every "
        "retry: the plan's requests per second or messages per day ran out; run the same "
        "command later to resume (nobody gets it twice)"
    )


def test_reading_the_suppression_lists_needs_its_own_permission(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    status, message, _ = DOCUMENTED["forbidden"]
    sendgrid_server.fail(status, 8, message=message, paths="/v3/suppression/")
    result = crusader(site(tmp_path, sendgrid_server), clock, "run")
    line = one_error_line(result)
    assert "suppression list (HTTP 403): access forbidden; " in line
    assert line.endswith(
        f"{SCOPE}: reading SendGrid's suppression lists needs Suppressions read (Settings > "
        "API Keys in SendGrid > Edit), besides Mail Send"
    )
    assert sendgrid_server.mail_requests() == []
