"""The subscribe form in a real browser (headless chromium), served by the app over uvicorn on
127.0.0.1, at 375 and 1000 px: it fits without sideways scrolling, its text is readable
(contrast of at least 4.5:1), the address field is labelled and the robots' field is neither
seen nor said, nothing loads from anywhere else, and a person typing their address and
pressing Subscribe gets "Check your inbox" and a confirmation (no script anywhere). And the
welcome, at 600 and 375 px, light and dark.

Skipped without chromium on a developer's machine (``make services`` installs it); under CI a
missing chromium is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from peers.sendgrid_server import SendGridServer, sendgrid_server

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.models import Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.subscriptions.welcome import WelcomeMail
from crusader_mail.web.app import build_app
from tests.support.browser import NEEDS_CHROMIUM, Browser, Page, launch, reader_html
from tests.support.contrast import AA_TEXT, contrast, luminance, parse_color, unreadable
from tests.support.inbox import make_settings
from tests.support.joining import POST, seed_archive
from tests.support.web import eventually, running

__all__ = ["sendgrid_server"]

pytestmark = NEEDS_CHROMIUM
SHOTS = os.environ.get("CRUSADER_MAIL_SHOTS")  # a folder: keep the screenshots there to look at

# Run in the page: the form's boxes and what the page looks like to a person.
FORM = r"""
(() => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, width: r.width, height: r.height}; };
  const email = document.getElementById('email');
  return {
    email: box(email), button: box(document.querySelector('form.join button')),
    label: document.querySelector('label[for=email]').textContent.trim(),
    trap: box(document.getElementById('comment')),
    scripts: document.scripts.length,
    h1: document.querySelector('h1').textContent,
  };
})()
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from launch(tmp_path_factory)


@pytest.fixture
def settings(clean_env: Path, tmp_path: Path, sendgrid_server: SendGridServer) -> Settings:
    return make_settings(
        tmp_path,
        sendgrid={"api_key": sendgrid_server.api_key, "api_url": sendgrid_server.url},
        server={"same_host": True},
    )


@pytest.fixture
def site(settings: Settings, clock: FixedClock) -> Iterator[str]:
    mailer = make_mailer(settings, clock, sleep=lambda _s: None)
    with running(build_app(settings, clock, mailer, open_store(settings, clock))) as url:
        yield url


def seen_form(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(FORM)
    return found


def check_page(page: Page, width: int) -> dict[str, Any]:
    """What every page of the form must be at ``width``; the page's form boxes."""
    seen = page.inspect()
    assert seen["innerWidth"] == width
    assert seen["scrollWidth"] <= width, "the page scrolls sideways"
    assert unreadable(seen["texts"]) == []
    assert "Leave this field empty" not in {t["text"] for t in seen["texts"]}  # not seen
    assert page.refused == []
    assert set(page.remote_addresses) == {"127.0.0.1"}
    form = seen_form(page)
    for name in ("email", "button"):
        assert 0 <= form[name]["left"] < form[name]["right"] <= width, (name, form[name])
    assert form["email"]["width"] >= min(280, width - 60)  # a field one can type into
    assert form["trap"]["right"] < 0  # the robots' field is off the page
    assert form["scripts"] == 0
    return form


def field_names(page: Page) -> list[tuple[str, str]]:
    """(role, name) of every form control a screen reader announces."""
    tree = page.browser.call("Accessibility.getFullAXTree", {}, page.session)
    found = []
    for node in tree["nodes"]:
        role = node.get("role", {}).get("value")
        if role in ("textbox", "button") and not node.get("ignored"):
            found.append((str(role), str(node.get("name", {}).get("value", ""))))
    return found


@pytest.mark.parametrize("width", [375, 1000])
def test_the_form_reads_well_and_subscribes_a_person(
    browser: Browser,
    site: str,
    settings: Settings,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    width: int,
) -> None:
    email = f"reader{width}@reader.example"
    with browser.visit(site + "/subscribe", width=width) as page:
        form = check_page(page, width)
        assert form["label"] == "Your email address"
        assert form["h1"] == "Subscribe to Biz Crusader"
        assert field_names(page) == [("textbox", "Your email address"), ("button", "Subscribe")]
        keep(page, f"subscribe-{width}.png")

        page.evaluate("document.getElementById('email').focus()")
        page.browser.call("Input.insertText", {"text": email}, page.session)
        clock.advance(timedelta(seconds=6))  # the time a person takes
        page.evaluate("document.querySelector('form.join button').click()")
        page.browser.wait_for("Page.loadEventFired", page.session)
        answer = page.inspect()
        assert answer["scrollWidth"] <= width
        assert [t["text"] for t in answer["texts"] if t["tag"] == "h1"] == ["Check your inbox"]
        keep(page, f"subscribe-done-{width}.png")

    eventually(lambda: len(sendgrid_server.to(email)) == 1)
    reader = open_store(settings, clock).roster.get(email)
    assert reader is not None
    assert reader.status is Status.PENDING


@pytest.mark.parametrize("width", [375, 1000])
def test_the_form_shown_again_reads_well(browser: Browser, site: str, width: int) -> None:
    """The form a too-quick press gets: a note, the address kept (pressed at once here)."""
    with browser.visit(site + "/subscribe", width=width) as page:
        page.evaluate("document.getElementById('email').value = 'quick@reader.example'")
        page.evaluate("document.querySelector('form.join button').click()")
        page.browser.wait_for("Page.loadEventFired", page.session)
        check_page(page, width)
        texts = [t["text"] for t in page.inspect()["texts"]]
        assert any(text.startswith("That was quick!") for text in texts)
        value = page.evaluate("document.getElementById('email').value")
        assert value == "quick@reader.example"
        keep(page, f"subscribe-again-{width}.png")


def test_a_narrow_field_is_caught(browser: Browser, site: str) -> None:
    """The checks can fail: a field wider than the screen is reported."""
    with browser.visit(site + "/subscribe", width=375) as page:
        page.evaluate("document.getElementById('email').style.maxWidth = 'none'")
        page.evaluate("document.getElementById('email').style.width = '600px'")
        with pytest.raises(AssertionError):
            check_page(page, 375)


def keep(page: Page, name: str) -> None:
    """Save a screenshot to look at, when ``CRUSADER_MAIL_SHOTS`` names a folder."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / name).write_bytes(page.screenshot())


@pytest.mark.parametrize(("width", "dark"), [(600, False), (375, False), (600, True)])
def test_the_welcome_reads_well(
    browser: Browser, settings: Settings, clock: FixedClock, width: int, dark: bool
) -> None:
    """The welcome is the newsletter's page: it fits, light and dark, and names its links."""
    seed_archive(settings, clock, [[POST + "280", POST + "412"]])
    welcome = WelcomeMail(settings, clock, open_store(settings, clock)).rendered("Welcome")
    assert not isinstance(welcome, str), welcome
    with browser.open(reader_html(welcome), width=width, dark=dark) as page:
        seen = page.inspect()
        names = page.link_names()
        keep(page, f"welcome-{width}-{'dark' if dark else 'light'}.png")
    assert seen["scrollWidth"] <= width
    assert seen["container"]["right"] <= width
    assert seen["h1"] == 1
    column, _ = parse_color(seen["container_background"])
    assert (luminance(column) < 0.05) if dark else (luminance(column) > 0.9)
    low = [t["text"] for t in seen["texts"] if contrast(t["color"], t["background"]) < AA_TEXT]
    assert low == []
    assert "Read more : Handling Objections: The Complete Field Guide" in names  # as said
    assert page.refused == []
