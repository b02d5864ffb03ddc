"""The preferences page over real HTTP (uvicorn on 127.0.0.1), replies through the SendGrid
peer: a GET shows the reader's choices and changes nothing; a POST with the reader's own
token changes frequency, topics, a pause or leaves, each recorded in the consent history; a
forged token, another purpose's, a form from another site change nothing; the unsubscribe
page offers a pause instead, and leaving on the web sends no mail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from peers.sendgrid_server import SendGridServer, sendgrid_server

from crusader_mail.clock import FixedClock
from crusader_mail.models import ConsentAction, Frequency, Preferences, Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.util.tokens import Purpose, Signer
from tests.support.inbox import SECRET, make_settings
from tests.support.web import web_app

__all__ = ["sendgrid_server"]

SERVE = "https://mail.bizcrusader.example"  # serve's public origin (from confirm_url)
JANE = "Jane@reader.example"
BOB = "bob@reader.example"
TOPICS = ("Marketing", "Sales", "Pricing")


@pytest.fixture
def settings(
    clean_env: Path, tmp_path: Path, sendgrid_server: SendGridServer, clock: FixedClock
) -> Settings:
    made = make_settings(
        tmp_path,
        sendgrid={"api_key": sendgrid_server.api_key, "api_url": sendgrid_server.url},
        server={"same_host": True},
    )
    newsletter = made.newsletter.model_copy(update={"topics": TOPICS})
    made = made.model_copy(update={"newsletter": newsletter})
    with open_store(made, clock).roster.edit() as changes:
        changes.add(JANE, via=Source.CLI)
        changes.add(BOB, via=Source.CLI)
    return made


@pytest.fixture
def http(settings: Settings, clock: FixedClock) -> Iterator[httpx.Client]:
    with web_app(settings, clock) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def token(email: str, clock: FixedClock, purpose: Purpose = Purpose.PREFERENCES) -> str:
    return Signer(SECRET).make(purpose, email, clock.now())


def choose(http: httpx.Client, **fields: str | list[str]) -> httpx.Response:
    return http.post("/preferences", data=fields, headers={"Origin": SERVE})


def prefs(settings: Settings, clock: FixedClock, email: str) -> Preferences:
    return open_store(settings, clock).roster.preferences().get(email.lower(), Preferences())


def actions(settings: Settings, clock: FixedClock, email: str) -> list[ConsentAction]:
    return [event.action for event in open_store(settings, clock).roster.history(email)]


def files(settings: Settings) -> dict[str, bytes]:
    folder = settings.subscribers_dir
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def test_the_page_shows_the_choices_and_a_get_changes_nothing(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    before = files(settings)
    for _ in range(3):  # mail scanners follow links
        page = http.get("/preferences", params={"token": token(JANE, clock)})
        assert page.status_code == 200
    assert "J•••@reader.example" in page.text
    assert JANE not in page.text
    assert "<script" not in page.text
    assert page.text.count('type="radio"') == 3
    for topic in TOPICS:
        assert f'value="{topic}"' in page.text
    assert page.text.count('name="weeks"') == 3
    assert 'value="leave"' in page.text
    assert page.headers["referrer-policy"] == "same-origin"
    assert files(settings) == before
    assert sendgrid_server.deliveries == []


def test_frequency_topics_pause_resume_each_land_in_the_history(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    mine = token(JANE, clock)
    done = choose(
        http, token=mine, action="save", frequency="weekly", topics=["sales", "Marketing"]
    )
    assert done.status_code == 200
    assert "One weekly digest, only about Marketing, Sales." in done.text
    assert prefs(settings, clock, JANE) == Preferences(
        frequency=Frequency.WEEKLY, topics=("Marketing", "Sales")
    )
    clock.advance(timedelta(hours=1))
    paused = choose(http, token=mine, action="pause", weeks="8")
    assert paused.status_code == 200
    until = clock.now() + timedelta(weeks=8)
    assert f"until {until.day} {until:%B %Y}" in paused.text
    assert prefs(settings, clock, JANE).paused_until == until
    page = http.get("/preferences", params={"token": mine})
    assert "Resume now" in page.text
    assert 'value="pause"' not in page.text
    clock.advance(timedelta(hours=1))
    assert choose(http, token=mine, action="resume").status_code == 200
    assert prefs(settings, clock, JANE).paused_until is None
    assert actions(settings, clock, JANE) == [
        ConsentAction.ADD,
        ConsentAction.PREFERENCES,
        ConsentAction.PAUSE,
        ConsentAction.RESUME,
    ]
    assert [e.via for e in open_store(settings, clock).roster.history(JANE)][1:] == [Source.WEB] * 3
    assert prefs(settings, clock, BOB) == Preferences()  # nobody else changed
    assert sendgrid_server.deliveries == []  # no mail about it


def test_leaving_from_the_page_is_the_goodbye(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    done = choose(http, token=token(JANE, clock), action="leave")
    assert done.status_code == 200
    assert "You are unsubscribed" in done.text
    assert "no more mail comes" in done.text
    assert f'href="{SERVE}/subscribe"' in done.text  # how to come back
    reader = open_store(settings, clock).roster.get(JANE)
    assert reader is not None
    assert (reader.status, reader.left_via) == (Status.UNSUBSCRIBED, Source.WEB)
    assert open_store(settings, clock).mail.waiting() == 0
    assert sendgrid_server.deliveries == []
    # the link still opens: it says they left, and offers no choice
    again = http.get("/preferences", params={"token": token(JANE, clock)})
    assert "You are unsubscribed" in again.text
    assert 'action="/preferences"' not in again.text


@pytest.mark.parametrize(
    "bad",
    ["", "nonsense", "a" * 29, "forged-by-another-key", "unsubscribe-token", "confirm-token"],
)
def test_forged_and_other_purposes_tokens_change_nothing(
    http: httpx.Client, settings: Settings, clock: FixedClock, bad: str
) -> None:
    made = {
        "forged-by-another-key": Signer("another-secret-0123456789").make(
            Purpose.PREFERENCES, JANE, clock.now()
        ),
        "unsubscribe-token": token(JANE, clock, Purpose.UNSUBSCRIBE),
        "confirm-token": token(JANE, clock, Purpose.CONFIRM),
    }
    value = made.get(bad, bad)
    before = files(settings)
    assert http.get("/preferences", params={"token": value}).status_code == 400
    for action in ("save", "pause", "leave"):
        answer = choose(http, token=value, action=action, frequency="weekly", weeks="4")
        assert answer.status_code == 400
        assert "This link does not work" in answer.text
    assert files(settings) == before


def test_another_readers_token_changes_only_that_reader(
    http: httpx.Client, settings: Settings, clock: FixedClock
) -> None:
    page = http.get("/preferences", params={"token": token(BOB, clock)})
    assert "b•••@reader.example" in page.text
    assert "J•••@reader.example" not in page.text
    choose(http, token=token(BOB, clock), action="pause", weeks="4")
    assert prefs(settings, clock, BOB).paused(clock.now())
    assert prefs(settings, clock, JANE) == Preferences()
    assert actions(settings, clock, JANE) == [ConsentAction.ADD]


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Origin": "null"}, {}],
    ids=["other-site", "null", "none"],
)
def test_a_form_from_another_site_is_refused(
    http: httpx.Client, settings: Settings, clock: FixedClock, headers: dict[str, str]
) -> None:
    before = files(settings)
    answer = http.post(
        "/preferences", data={"token": token(JANE, clock), "action": "leave"}, headers=headers
    )
    assert answer.status_code == 403
    assert files(settings) == before


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "save", "frequency": "daily"},
        {"action": "save", "topics": "Gossip"},
        {"action": "pause", "weeks": "52"},
        {"action": "forget"},
    ],
)
def test_what_the_page_does_not_offer_is_refused(
    http: httpx.Client, settings: Settings, clock: FixedClock, fields: dict[str, str]
) -> None:
    before = files(settings)
    answer = choose(http, token=token(JANE, clock), **fields)
    assert answer.status_code == 400
    assert re.search(r'class="error"[^>]*>[^<]*nothing changed', answer.text)
    assert files(settings) == before


def test_the_unsubscribe_page_offers_a_pause_that_keeps_the_reader(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    page = http.get("/unsubscribe", params={"token": token(JANE, clock, Purpose.UNSUBSCRIBE)})
    assert "Pause instead?" in page.text
    form = re.search(
        r'<form method="post" action="/preferences">\s*'
        r'<input type="hidden" name="token" value="([a-z2-7]+)">\s*'
        r'<input type="hidden" name="action" value="pause">\s*'
        r'<input type="hidden" name="weeks" value="(\d+)">',
        page.text,
    )
    assert form, page.text
    assert choose(http, token=form[1], action="pause", weeks=form[2]).status_code == 200
    reader = open_store(settings, clock).roster.get(JANE)
    assert reader is not None
    assert reader.status is Status.ACTIVE
    assert prefs(settings, clock, JANE).paused_until == clock.now() + timedelta(weeks=4)
    assert sendgrid_server.deliveries == []
