"""Subscribing on the web, over real HTTP (uvicorn on 127.0.0.1), replies through the SendGrid
peer: the form to a confirmed reader and their welcome; one answer whoever the address is;
forms from other sites, robots, too fast or too late; the per-client and the global limit,
shared by every server on the store."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from peers.sendgrid_server import SendGridServer, sendgrid_server

from crusader_mail.clock import FixedClock
from crusader_mail.compose.guards import html_problems
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.models import ConsentAction, Source, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.util.statefile import locked
from crusader_mail.web.app import build_app
from tests.support.commands import run_cli, write_site_config
from tests.support.inbox import make_settings
from tests.support.joining import (
    POST,
    SITE,
    form_token,
    fresh_form,
    join,
    seed_archive,
    text_of,
)
from tests.support.web import eventually, running, web_app

__all__ = ["sendgrid_server"]

SERVE = "https://mail.bizcrusader.example"  # serve's public origin (from confirm_url)


def settings_for(tmp_path: Path, sendgrid: SendGridServer, **server: Any) -> Settings:
    return make_settings(
        tmp_path,
        sendgrid={"api_key": sendgrid.api_key, "api_url": sendgrid.url},
        server={"same_host": True, **server},
    )


@pytest.fixture
def settings(clean_env: Path, tmp_path: Path, sendgrid_server: SendGridServer) -> Settings:
    return settings_for(tmp_path, sendgrid_server)


@pytest.fixture
def http(settings: Settings, clock: FixedClock) -> Iterator[httpx.Client]:
    with web_app(settings, clock) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def reader_status(settings: Settings, clock: FixedClock, email: str) -> Status | None:
    reader = open_store(settings, clock).roster.get(email)
    return reader.status if reader else None


def got(sendgrid: SendGridServer, email: str, count: int) -> Callable[[], bool]:
    """Has ``email`` got ``count`` mails?"""
    return lambda: len(sendgrid.to(email)) == count


def heading(page: httpx.Response) -> str:
    match = re.search(r"<h1>(.*?)</h1>", page.text)
    assert match, page.text
    return match.group(1)


# --- the acceptance: the form to a confirmed reader ---------------------------------------------


def test_the_form_makes_a_confirmed_reader_who_gets_the_blogs_best_posts(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    # issues sent so far chose p=280 three times, p=412 twice, p=160 once as a related post
    seed_archive(
        settings,
        clock,
        [[POST + "280", POST + "412"], [POST + "280", POST + "160"], [POST + "280", POST + "412"]],
    )
    page = http.get("/subscribe")
    assert page.status_code == 200
    assert "<script" not in page.text
    assert 'action="/subscribe"' in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert page.headers["Referrer-Policy"] == "same-origin"  # so the browser sends its Origin
    assert not (settings.state_dir / "inbox.json").exists()  # GET changes nothing

    clock.advance(timedelta(seconds=9))  # a person types their address
    answer = join(http, "Ada@Reader.example", form_token(page.text))
    assert answer.status_code == 200
    assert heading(answer) == "Check your inbox"
    assert "A•••@reader.example" in answer.text

    eventually(lambda: len(sendgrid_server.to("Ada@reader.example")) == 1)
    [asked] = sendgrid_server.to("Ada@reader.example")
    assert asked.subject == "Please confirm your subscription to Biz Crusader"
    link = re.search(r"https://mail\.bizcrusader\.example/confirm\?token=(\w+)", text_of(asked))
    assert link, text_of(asked)
    assert reader_status(settings, clock, "ada@reader.example") is Status.PENDING

    shown = http.get("/confirm", params={"token": link.group(1)})  # the link: a button
    assert "Yes, subscribe me" in shown.text
    assert reader_status(settings, clock, "ada@reader.example") is Status.PENDING
    done = http.post("/confirm", data={"token": link.group(1)}, headers={"Origin": SERVE})
    assert heading(done) == "You are subscribed"
    assert reader_status(settings, clock, "ada@reader.example") is Status.ACTIVE
    history = list(open_store(settings, clock).roster.history("ada@reader.example"))
    assert [(e.action, e.via) for e in history] == [
        (ConsentAction.REQUEST, Source.WEB),
        (ConsentAction.CONFIRM, Source.WEB),
    ]

    eventually(lambda: len(sendgrid_server.to("Ada@reader.example")) == 2)
    welcome = sendgrid_server.to("Ada@reader.example")[1]
    assert welcome.subject == "Welcome to Biz Crusader"
    assert [kind for kind, _ in welcome.content] == ["text/plain", "text/html"]
    html, text = text_of(welcome, "text/html"), text_of(welcome)
    titles = re.findall(r'class="related-title"[^>]*><a href="([^"]+)"', html)
    assert titles == [
        "https://bizcrusader.example/2026/04/handling-objections-the-complete-field-guide/",
        "https://bizcrusader.example/2026/07/how-to-raise-your-prices-without-losing-good-clients/",
        "https://bizcrusader.example/2026/02/the-fortune-is-in-the-follow-up-a-seven-touch-cadence/",
    ]
    assert "Handling Objections: The Complete Field Guide" in text
    assert 'style="' in html  # the newsletter's CSS, inlined
    assert html_problems(html) == []
    assert "[[" not in html + text
    assert "Ada@reader.example" in html  # their own footer
    assert "Ada@reader.example" in text
    mailto, one_click = re.findall(r"<([^>]+)>", welcome.headers["List-Unsubscribe"])
    assert mailto.startswith("mailto:news+unsubscribe-")
    assert f'href="{one_click}"' in html  # their own one-click link, in the footer
    assert "one click" in html


# --- one answer whoever the address is ----------------------------------------------------------

NEW, PENDING, ACTIVE, LEFT = EVERYONE = tuple(f"a{n}@reader.example" for n in range(4))


def test_the_answer_is_the_same_for_a_new_pending_active_or_departed_reader(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    store = open_store(settings, clock)
    with store.roster.edit() as roster:
        roster.request(PENDING, via=Source.WEB, ref="web:old")  # asked two days ago
        roster.add(ACTIVE, via=Source.CLI)
        roster.add(LEFT, via=Source.CLI)
        roster.unsubscribe(LEFT, via=Source.WEB)
    clock.advance(timedelta(days=2))
    answers = []
    for email in EVERYONE:
        form = fresh_form(http, clock)
        # the roster is locked while the answer comes: an answer that waited for the request
        # (reading or changing how the address is listed) would never come
        with locked(settings.subscribers_dir / "subscribers.csv"):
            answer = join(http, email, form, headers={"Connection": "close"})
            assert sendgrid_server.to(email) == []  # nothing asked yet
        answers.append((answer.status_code, answer.headers["content-type"], answer.text))
        eventually(got(sendgrid_server, email, 1))  # asked after it
    assert len(set(answers)) == 1  # the same status, headers and page, byte for byte
    assert answers[0][0] == 200
    assert "a•••@reader.example" in answers[0][2]

    subjects = {email: [d.subject for d in sendgrid_server.to(email)] for email in EVERYONE}
    assert subjects == {
        NEW: ["Please confirm your subscription to Biz Crusader"],
        PENDING: ["Please confirm your subscription to Biz Crusader"],
        ACTIVE: ["You are already subscribed to Biz Crusader"],
        LEFT: ["Please confirm your subscription to Biz Crusader"],
    }
    statuses = {email: reader_status(settings, clock, email) for email in EVERYONE}
    assert statuses == {
        NEW: Status.PENDING,
        PENDING: Status.PENDING,
        ACTIVE: Status.ACTIVE,
        LEFT: Status.UNSUBSCRIBED,  # until they confirm themselves
    }


def test_a_second_request_within_a_day_gets_the_same_answer_and_no_second_mail(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    first = join(http, NEW, fresh_form(http, clock))
    eventually(lambda: len(sendgrid_server.to(NEW)) == 1)
    second = join(http, NEW, fresh_form(http, clock))
    assert (second.status_code, second.text) == (first.status_code, first.text)
    join(http, PENDING, fresh_form(http, clock))  # its mail comes after the second request's
    eventually(lambda: len(sendgrid_server.to(PENDING)) == 1)
    assert len(sendgrid_server.to(NEW)) == 1  # at most one confirmation a day per mailbox


# --- refused or asked again -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ({"Origin": SITE}, True),  # the blog
        ({"Origin": SERVE}, True),  # serve's public address
        ({"Referer": SITE + "/2026/11/a-post/"}, True),  # an old browser: its Referer
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "https://bizcrusader.example.evil.example"}, False),
        ({"Origin": "null"}, False),  # a page that hides its address
        ({"Origin": "https://evil.example", "Referer": SITE + "/"}, False),  # Origin decides
        ({"Referer": "https://evil.example/" + SITE}, False),
        ({}, False),  # neither: an old browser on a page hiding its referrer
    ],
)
def test_only_forms_from_the_blog_or_this_server_are_taken(
    http: httpx.Client,
    settings: Settings,
    clock: FixedClock,
    headers: dict[str, str],
    accepted: bool,
) -> None:
    answer = join(http, NEW, fresh_form(http, clock), source=None, headers=headers)
    if accepted:
        assert (answer.status_code, heading(answer)) == (200, "Check your inbox")
        eventually(lambda: reader_status(settings, clock, NEW) is Status.PENDING)
    else:
        assert answer.status_code == 403
        assert "The form came from a page we do not know, so nothing was done" in answer.text
        assert form_token(answer.text)  # the form, to subscribe here
        assert not (settings.state_dir / "inbox.json").exists()  # not even counted
        assert reader_status(settings, clock, NEW) is None


def test_this_servers_own_address_is_its_own_site(
    http: httpx.Client, settings: Settings, clock: FixedClock
) -> None:
    own = str(http.base_url).rstrip("/")  # http://127.0.0.1:<port>, as a browser on it says
    answer = join(http, NEW, fresh_form(http, clock), source=own)
    assert answer.status_code == 200
    other_port = own.rsplit(":", 1)[0] + ":1"
    assert join(http, ACTIVE, fresh_form(http, clock), source=other_port).status_code == 403


def test_the_snippets_post_too_fast_or_too_old_forms_are_shown_again_politely(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    from_blog = http.post(
        "/subscribe", data={"email": NEW, "comment": ""}, headers={"Origin": SITE}
    )
    assert from_blog.status_code == 200
    assert heading(from_blog) == "Subscribe to Biz Crusader"
    assert "Almost there: press Subscribe to confirm this address" in from_blog.text
    assert f'value="{NEW}"' in from_blog.text  # filled in
    token = form_token(from_blog.text)

    too_fast = join(http, NEW, token)  # pressed within FORM_MIN_AGE
    assert "That was quick!" in too_fast.text
    clock.advance(timedelta(hours=2, seconds=1))
    too_old = join(http, NEW, token)
    assert "This page was open for a long while" in too_old.text
    forged = join(http, NEW, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert "Almost there" in forged.text
    for page in (too_fast, too_old, forged):
        assert page.status_code == 200
        assert f'value="{NEW}"' in page.text
    assert reader_status(settings, clock, NEW) is None
    assert not (settings.state_dir / "inbox.json").exists()

    clock.advance(timedelta(seconds=5))  # the form of the last page, pressed by a person
    assert heading(join(http, NEW, form_token(forged.text))) == "Check your inbox"
    eventually(lambda: len(sendgrid_server.to(NEW)) == 1)


def test_a_robot_filling_the_hidden_field_is_answered_as_a_person_and_nothing_is_done(
    http: httpx.Client, settings: Settings, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    robot = join(http, NEW, fresh_form(http, clock), comment="Great post! Visit my site")
    person = join(http, ACTIVE, fresh_form(http, clock))
    assert (robot.status_code, robot.text) == (person.status_code, person.text)
    eventually(lambda: len(sendgrid_server.to(ACTIVE)) == 1)
    assert reader_status(settings, clock, NEW) is None
    assert sendgrid_server.to(NEW) == []


def test_an_address_that_is_none_gets_the_form_again(
    http: httpx.Client, settings: Settings, clock: FixedClock
) -> None:
    answer = join(http, "not an address", fresh_form(http, clock))
    assert answer.status_code == 400
    assert "That does not look like an email address" in answer.text
    assert 'value="not an address"' in answer.text
    assert not (settings.state_dir / "inbox.json").exists()


# --- limits ------------------------------------------------------------------------------------


def test_each_client_and_everyone_together_are_limited_per_hour_across_servers(
    clean_env: Path, tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = settings_for(
        tmp_path,
        sendgrid_server,
        trusted_proxy_header="X-Forwarded-For",
        subscribe_per_ip=2,
        subscribe_per_hour=5,
    )
    mailer = make_mailer(settings, clock, sleep=lambda _s: None)
    first = build_app(settings, clock, mailer, open_store(settings, clock))
    second = build_app(settings, clock, mailer, open_store(settings, clock))
    with (
        running(first) as one,
        running(second) as two,
        httpx.Client(base_url=one, timeout=10) as a,
        httpx.Client(base_url=two, timeout=10) as b,
    ):

        def post(http: httpx.Client, n: int, forwarded: str) -> int:
            headers = {"X-Forwarded-For": forwarded}
            answer = join(http, f"r{n}@reader.example", fresh_form(http, clock), headers=headers)
            return answer.status_code

        # one client (the proxy's last address), whatever it claims before it, on two servers
        assert post(a, 0, "203.0.113.7") == 200
        assert post(b, 1, "10.0.0.1, 203.0.113.7") == 200
        assert post(a, 2, "198.51.100.9, 203.0.113.7") == 429
        # an IPv6 client counts by its /64
        assert post(b, 3, "2001:db8:0:1::1") == 200
        assert post(a, 4, "2001:db8:0:1::ffff") == 200
        assert post(b, 5, "[2001:db8:0:1::2]:443") == 429
        assert post(a, 6, "2001:db8:0:2::1") == 200  # five in the hour: everyone's limit
        assert post(b, 7, "192.0.2.1") == 429
        busy = join(
            a, "r8@reader.example", fresh_form(a, clock), headers={"X-Forwarded-For": "192.0.2.2"}
        )
        assert "Many people are signing up right now" in busy.text
        clock.advance(timedelta(minutes=61))
        assert post(b, 9, "203.0.113.7") == 200
        eventually(lambda: len(list(open_store(settings, clock).roster.iter())) == 6)
    kept = (settings.state_dir / "inbox.json").read_text()
    for address in ("203.0.113.7", "2001:db8", "192.0.2", "127.0.0.1"):
        assert address not in kept  # keyed hashes only
    listed = {reader.email for reader in open_store(settings, clock).roster.iter()}
    assert listed == {f"r{n}@reader.example" for n in (0, 1, 3, 4, 6, 9)}


def test_without_a_trusted_proxy_header_the_connection_is_the_client(
    clean_env: Path, tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = settings_for(tmp_path, sendgrid_server, subscribe_per_ip=1)
    with web_app(settings, clock) as url, httpx.Client(base_url=url, timeout=10) as http:
        spoofed = {"X-Forwarded-For": "203.0.113.1", "X-Real-IP": "203.0.113.2"}
        assert join(http, NEW, fresh_form(http, clock), headers=spoofed).status_code == 200
        spoofed = {"X-Forwarded-For": "203.0.113.3", "X-Real-IP": "203.0.113.4"}
        assert join(http, ACTIVE, fresh_form(http, clock), headers=spoofed).status_code == 429


# --- the snippet for the blog -------------------------------------------------------------------


class _Form(HTMLParser):
    """The form of a page: its attributes and its fields' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict[str, str | None] = {}
        self.fields: dict[str, str] = {}
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if tag == "form":
            self.form = found
        elif tag == "input" and found.get("name"):
            self.fields[str(found["name"])] = found.get("value") or ""


def snippet_of(folder: Path, **env: str) -> str:
    """``crusader-mail snippet`` (the real command), the settings in ``env``."""
    done = run_cli(folder, "snippet", env={f"CRUSADER_MAIL_{k.upper()}": v for k, v in env.items()})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_snippet_posts_to_serve_and_needs_no_script(
    http: httpx.Client, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    write_site_config(tmp_path)
    confirm_url = "https://mail.bizcrusader.example/news/confirm"
    page = snippet_of(tmp_path, newsletter__confirm_url=confirm_url)
    parsed = _Form()
    parsed.feed(page)
    assert parsed.form["method"] == "post"
    assert parsed.form["action"] == "https://mail.bizcrusader.example/news/subscribe"
    assert parsed.tags == {"form", "label", "input", "div", "button"}  # no script, no style
    assert parsed.fields == {"email": "", "comment": ""}

    parsed.fields["email"] = NEW  # a visitor on the blog fills it in and presses the button
    posted = http.post("/subscribe", data=parsed.fields, headers={"Origin": SITE})
    assert "Almost there" in posted.text
    again = _Form()
    again.feed(posted.text)
    assert again.fields["email"] == NEW
    clock.advance(timedelta(seconds=4))
    pressed = http.post("/subscribe", data=again.fields, headers={"Origin": str(http.base_url)})
    assert heading(pressed) == "Check your inbox"
    eventually(lambda: reader_status(settings, clock, NEW) is Status.PENDING)

    parsed = _Form()
    parsed.feed(snippet_of(tmp_path, server__public_url="https://join.example.org/"))
    assert parsed.form["action"] == "https://join.example.org/subscribe"


def test_the_snippet_needs_to_know_where_serve_is(tmp_path: Path) -> None:
    write_site_config(tmp_path)
    done = run_cli(tmp_path, "snippet")
    assert done.returncode == 2
    assert done.stderr == (
        "crusader-mail: error: the snippet needs the address of serve: set [server] "
        "public_url (or [newsletter] confirm_url)\n"
    )
