"""How readers leave: what counts as a one-click and as reading the unsubscribe mail
(``Settings.leaving``), SendGrid's subscription tracking instead of our https link, the footer's
wording, ``config check``, and the refusal of a real send nobody could leave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from peers.sendgrid_server import SCHEMA_PATH, SendGridServer, load_schema, validate_mail
from pydantic import SecretStr

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.compose.composer import Composer
from crusader_mail.delivery.body import BodyBuilder
from crusader_mail.delivery.client import client_factory
from crusader_mail.delivery.dry_run import SENDGRID_LINK_STAND_IN
from crusader_mail.delivery.engine import deliver
from crusader_mail.delivery.links import list_headers
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.delivery.transport import DryRunTransport
from crusader_mail.settings import (
    ImapSettings,
    LoadedSettings,
    NewsletterSettings,
    SendGridSettings,
    ServerSettings,
    Settings,
)
from crusader_mail.util.tokens import MAIL_ID_HEADER, Signer
from tests.support.golden import NOW, golden_posts, golden_settings
from tests.support.sending import (
    SECRET,
    ledgers,
    make_issue,
    make_readers,
    make_settings,
    reader_address,
    sendgrid,
)

CLI = Path(sys.executable).with_name("crusader-mail")
URL = "https://mail.bizcrusader.example/unsubscribe"


def settings_with(
    *,
    tracking: bool = False,
    url: str | None = None,
    same_host: bool = False,
    imap: bool = False,
    inbound: bool = False,
) -> Settings:
    return Settings(
        sendgrid=SendGridSettings(subscription_tracking=tracking),
        newsletter=NewsletterSettings(unsubscribe_url=url),
        imap=ImapSettings(host="imap.example.org", user="news") if imap else ImapSettings(),
        server=ServerSettings(
            same_host=same_host, inbound_secret=SecretStr("in-secret") if inbound else None
        ),
    )


@pytest.mark.parametrize(
    ("options", "one_click", "by_mail"),
    [
        ({}, None, None),
        ({"tracking": True}, "sendgrid", None),
        ({"url": URL}, None, None),  # serve elsewhere, files store: its changes never arrive
        ({"url": URL, "same_host": True}, "ours", None),
        ({"url": URL, "same_host": True, "tracking": True}, "sendgrid", None),
        ({"imap": True}, None, "imap"),
        ({"inbound": True}, None, None),
        ({"inbound": True, "same_host": True}, None, "inbound parse"),
        ({"imap": True, "inbound": True, "same_host": True}, None, "imap"),
    ],
)
def test_what_counts_as_a_way_out(
    options: dict[str, Any], one_click: str | None, by_mail: str | None
) -> None:
    leaving = settings_with(**options).leaving()
    assert (leaving.one_click, leaving.by_mail) == (one_click, by_mail)
    assert (leaving.problem is None) is bool(one_click or by_mail)
    unshared = (options.get("url") or options.get("inbound")) and not options.get("same_host")
    assert bool(leaving.notes) is bool(unshared)


def test_a_database_is_a_shared_store() -> None:
    """``database_url`` (the PostgreSQL store's setting) shares what serve records."""

    class WithDatabase(Settings):
        database_url: SecretStr | None = None

    shared = WithDatabase(newsletter=NewsletterSettings(unsubscribe_url=URL))
    assert shared.leaving().one_click is None
    shared = WithDatabase(
        newsletter=NewsletterSettings(unsubscribe_url=URL), database_url=SecretStr("postgres://")
    )
    assert shared.leaving().one_click == "ours"
    unset = WithDatabase(newsletter=NewsletterSettings(unsubscribe_url=URL), database_url=None)
    assert unset.leaving().one_click is None


# --- the links and bodies ---------------------------------------------------------------------


def test_our_https_one_click_only_when_it_counts(clock: FixedClock) -> None:
    signer = Signer(SECRET)
    counted = list_headers(
        settings_with(url=URL, same_host=True), signer, "a@x.example", clock.now()
    )
    assert counted["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"<{URL}?token=" in counted["List-Unsubscribe"]
    for settings in (settings_with(url=URL), settings_with(url=URL, same_host=True, tracking=True)):
        headers = list_headers(settings, signer, "a@x.example", clock.now())
        assert "List-Unsubscribe-Post" not in headers
        assert headers["List-Unsubscribe"].startswith("<mailto:")
        assert "https" not in headers["List-Unsubscribe"]


def test_subscription_tracking_asks_sendgrid_for_its_link_where_ours_would_be(
    clock: FixedClock,
) -> None:
    settings = settings_with(url=URL, same_host=True, tracking=True)
    builder = BodyBuilder(make_issue(), settings, Signer(SECRET), clock.now())
    body = builder.body([builder.personalization("a@x.example", "A")]).value()
    assert body["tracking_settings"] == {
        "subscription_tracking": {"enable": True, "substitution_tag": "[[unsubscribe_url]]"}
    }
    [person] = body["personalizations"]
    assert "[[unsubscribe_url]]" not in person["substitutions"]  # SendGrid fills it
    # no second one-click; the proof a bounce of this copy must return
    assert set(person["headers"]) == {"List-Unsubscribe", "List-Id", MAIL_ID_HEADER}
    assert validate_mail(body, load_schema(SCHEMA_PATH)) == []
    plain = BodyBuilder(make_issue(), settings_with(imap=True), Signer(SECRET), clock.now())
    assert (
        "tracking_settings" not in plain.body([plain.personalization("a@x.example", "A")]).value()
    )


def test_the_peer_refuses_a_misspelt_tracking_setting() -> None:
    body = {
        "personalizations": [{"to": [{"email": "a@x.example"}]}],
        "from": {"email": "news@x.example"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "t"}],
        "tracking_settings": {"subscription_tracking": {"enabled": True}},
    }
    problems = validate_mail(body, load_schema(SCHEMA_PATH))
    assert [field for _message, field in problems] == [
        "tracking_settings.subscription_tracking.enabled"
    ]
    body["tracking_settings"] = {"subscription_tracking": {"enable": "yes"}}
    assert validate_mail(body, load_schema(SCHEMA_PATH))


def test_a_reader_leaves_with_sendgrids_one_click_and_the_next_sync_records_it(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server, sendgrid={"subscription_tracking": True})
    readers = make_readers(settings, clock, 3)
    deliver(make_issue(), readers, ledgers(settings), sendgrid(settings, clock), settings, clock)
    [delivery] = sendgrid_server.to(reader_address(1))
    link = delivery.unsubscribe_link
    assert link is not None
    assert delivery.sendgrid_headers["List-Unsubscribe"] == f"<{link}>"
    assert "https" not in delivery.headers["List-Unsubscribe"]
    seen = delivery.rendered()
    assert f'<a href="{link}">Unsubscribe</a>' in seen
    assert f"Unsubscribe: {link}" in seen
    assert "[[" not in seen
    # RFC 8058: the mail client POSTs to SendGrid's link; SendGrid lists the address
    answer = httpx.post(link, content=b"List-Unsubscribe=One-Click")
    assert answer.status_code == 200

    counts = sync_suppressions(settings, readers, clock, client_factory(settings))
    assert counts["unsubscribed"] == 1
    left = readers.get(reader_address(1))
    assert left is not None
    assert left.status.value == "unsubscribed"


def test_the_dry_run_eml_shows_where_sendgrids_link_goes(tmp_path: Path, clock: FixedClock) -> None:
    settings = make_settings(tmp_path, sendgrid={"subscription_tracking": True})
    readers = make_readers(settings, clock, 2)
    deliver(
        make_issue(), readers, ledgers(settings), DryRunTransport(settings, clock), settings, clock
    )
    eml = (settings.outbox_dir / "first-reader.eml").read_text(encoding="utf-8")
    assert SENDGRID_LINK_STAND_IN in eml
    assert "[[unsubscribe_url]]" not in eml


# --- the footer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("one_click", [True, False])
def test_the_footer_promises_one_click_only_when_there_is_one(one_click: bool) -> None:
    settings = golden_settings()
    if one_click:
        settings = settings.model_copy(
            update={"sendgrid": SendGridSettings(subscription_tracking=True)}
        )
    posts, related = golden_posts()
    issue = Composer(settings).compose(posts, related, "2026-11-23-leaving0", NOW)
    for part in (issue.html, issue.text):
        assert ("one click" in part) is one_click
        assert "[[unsubscribe_url]]" in part
    if not one_click:
        assert "send it as it is" in issue.html
        assert "send the email this opens" in issue.text


# --- config check -------------------------------------------------------------------------------


def _check(settings: Settings, *args: str) -> Any:
    app = AppContext(_loaded=LoadedSettings(settings, None, {}))
    return CliRunner().invoke(cli, ["config", "check", *args], obj=app)


def test_config_check_shows_how_readers_leave_and_warns_without_one_click() -> None:
    shown = _check(settings_with(imap=True)).output
    assert "readers can leave: one click: none; by mail: IMAP" in shown
    assert "warning: no one-click unsubscribe" in shown
    assert "nothing would honour" not in shown
    data = json.loads(_check(settings_with(url=URL), "--json").stdout)
    assert data["leaving"]["one_click"] is None
    assert data["leaving"]["by_mail"] is None
    warnings = data["leaving"]["warnings"]
    assert warnings[0].startswith("nothing would honour an unsubscribe")
    assert any("unsubscribe_url does not count" in w for w in warnings)
    fine = _check(settings_with(tracking=True, imap=True)).output
    assert "one click: SendGrid's (subscription tracking); by mail: IMAP" in fine
    assert "warning" not in fine


# --- the refusal --------------------------------------------------------------------------------


def _real_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUSADER_MAIL_", "SENDGRID_"))}
    env.update(SENDGRID_API_KEY="SG.test", CRUSADER_MAIL_SECRET_KEY=SECRET)
    return subprocess.run(
        [str(CLI), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["run", "send"])
def test_a_real_send_nobody_could_leave_exits_2_and_a_dry_run_warns(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "crusader-mail.toml").write_text(
        'feeds = []\n[newsletter]\nname = "T"\nunsubscribe_url = "https://x.example/u"\n'
        '[sendgrid]\napi_url = "http://127.0.0.1:9"\n',
        encoding="utf-8",
    )
    refused = _real_cli(tmp_path, command)
    assert refused.returncode == 2
    [line] = refused.stderr.splitlines()
    assert line.startswith("crusader-mail: error: nothing would honour an unsubscribe")
    assert "subscription_tracking = true" in line
    assert not (tmp_path / "state").exists()  # refused before anything was touched
    dry = _real_cli(tmp_path, command, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "warning: nothing would honour an unsubscribe" in dry.stderr
    assert "unsubscribe_url does not count" in dry.stderr
