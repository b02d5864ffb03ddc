"""The preferences page and the unsubscribe page's "Pause instead?" in a real browser (headless
chromium), served by the app over uvicorn on 127.0.0.1, at 375 and 1000 px, light and dark:
nothing scrolls sideways, every text is readable (contrast of at least 4.5:1), every control is
on the screen and reached by the Tab key, and with the page's scripts switched off (it has none)
a person pressing the keys or clicking the controls saves a frequency and a topic, pauses, and
pauses instead of leaving.

Skipped without chromium on a developer's machine (``make services`` installs it); under CI a
missing chromium is a failure. With ``CRUSADER_MAIL_SHOTS`` naming a folder, the screenshots
are kept there to look at.
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
from crusader_mail.models import Frequency, Preferences, Status
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from tests.support.browser import NEEDS_CHROMIUM, Browser, Page, launch
from tests.support.contrast import unreadable
from tests.support.pages import READER, TOPICS, pages_settings, reader_page, serving

__all__ = ["sendgrid_server"]

pytestmark = NEEDS_CHROMIUM
SHOTS = os.environ.get("CRUSADER_MAIL_SHOTS")
LOOKS = [(375, False), (375, True), (1000, False), (1000, True)]

# Run in the page: every control a person uses (not the hidden fields), its box and its name.
CONTROLS = r"""
(() => [...document.querySelectorAll('button, input:not([type=hidden]), a[href]')]
  .map((e) => { const r = e.getBoundingClientRect();
    const label = e.labels && e.labels.length ? e.labels[0].textContent.trim() : '';
    return {key: e.tagName + '|' + (e.id || e.textContent.trim() || e.value),
            left: r.left, right: r.right, width: r.width, height: r.height,
            name: label || e.textContent.trim(), disabled: !!e.disabled,
            radio: e.type === 'radio', checked: !!e.checked}; }))()
"""
FOCUSED = r"""
(() => { const e = document.activeElement;
  return e && e !== document.body ? e.tagName + '|' + (e.id || e.textContent.trim() || e.value)
                                  : null; })()
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from launch(tmp_path_factory)


@pytest.fixture
def settings(
    clean_env: Path, tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> Settings:
    return pages_settings(tmp_path, clock, sendgrid_server.api_key, sendgrid_server.url)


@pytest.fixture
def site(settings: Settings, clock: FixedClock) -> Iterator[str]:
    with serving(settings, clock) as url:
        yield url


def keep(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / name).write_bytes(page.screenshot())


def tab_order(page: Page, limit: int = 40) -> list[str]:
    """The controls the Tab key reaches, in order, from the top of the page."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    seen: list[str] = []
    for _ in range(limit):
        press(page, "Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None or focused in seen:
            break
        seen.append(focused)
    return seen


def press(page: Page, key: str) -> None:
    """A key pressed and let go, as a keyboard does it."""
    codes = {"Tab": 9, "Enter": 13, " ": 32}
    for kind in ("keyDown", "keyUp"):
        event: dict[str, Any] = {"type": kind, "key": key, "code": "Space" if key == " " else key}
        event["windowsVirtualKeyCode"] = codes[key]
        if key in ("Enter", " ") and kind == "keyDown":
            event["text"] = "\r" if key == "Enter" else " "
        page.browser.call("Input.dispatchKeyEvent", event, page.session)


def check_page(page: Page, width: int) -> list[dict[str, Any]]:
    """What every one of these pages must be at ``width``: its controls."""
    seen = page.inspect()
    assert seen["innerWidth"] == width
    assert seen["scrollWidth"] <= width, "the page scrolls sideways"
    assert unreadable(seen["texts"]) == []
    assert page.refused == []
    assert page.evaluate("document.scripts.length") == 0
    controls: list[dict[str, Any]] = page.evaluate(CONTROLS)
    for control in controls:
        assert 0 <= control["left"] < control["right"] <= width, control
        assert control["width"] >= 16, control  # a target one can hit
        assert control["height"] >= 16, control
        assert control["name"], control  # said by a screen reader
        assert not control["disabled"], control
    # every one by the Tab key, in reading order; a group of radio buttons is one stop (its
    # chosen one), the arrow keys move within it as in every browser
    wanted = [c["key"] for c in controls if not c["radio"] or c["checked"]]
    assert tab_order(page) == wanted
    return controls


SEEN = {
    "preferences": [  # the controls' names, in reading order
        "Biz Crusader",
        "Every issue, as the editor sends them",
        "An email for every new post",
        "One weekly digest",
        *TOPICS,
        "Save my choice",
        "Pause 4 weeks",
        "Pause 8 weeks",
        "Pause 12 weeks",
        "Unsubscribe",
        "https://bizcrusader.example",
    ],
    "unsubscribe": [
        "Biz Crusader",
        "Unsubscribe",
        "Pause for 4 weeks",
        "choose how often and about what",
        "https://bizcrusader.example",
    ],
}


@pytest.mark.parametrize("name", sorted(SEEN))
@pytest.mark.parametrize(("width", "dark"), LOOKS)
def test_the_page_reads_well(
    browser: Browser, site: str, clock: FixedClock, name: str, width: int, dark: bool
) -> None:
    """The preferences page, and the unsubscribe page with its "Pause instead?"."""
    with browser.visit(reader_page(site, name, clock), width=width, dark=dark) as page:
        controls = check_page(page, width)
        keep(page, f"{name}-{width}-{'dark' if dark else 'light'}.png")
    assert [c["name"] for c in controls] == SEEN[name]


def no_scripts(page: Page) -> None:
    """Switch the page's scripts off: what follows is the browser's own forms."""
    page.browser.call("Emulation.setScriptExecutionDisabled", {"value": True}, page.session)


def click(page: Page, control: dict[str, Any]) -> None:
    """A mouse click in the middle of ``control`` (its box measured before)."""
    x = (control["left"] + control["right"]) / 2
    y = control["top"] + control["height"] / 2
    for kind in ("mousePressed", "mouseReleased"):
        page.browser.call(
            "Input.dispatchMouseEvent",
            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            page.session,
        )


BOXES = r"""
(() => Object.fromEntries([...document.querySelectorAll('button, input:not([type=hidden])')]
  .map((e) => { const r = e.getBoundingClientRect();
    const label = e.labels && e.labels.length ? e.labels[0].textContent.trim() : '';
    return [label || e.textContent.trim(),
            {left: r.left, right: r.right, top: r.top, height: r.height}]; })))()
"""


def heading(page: Page) -> list[str]:
    return [t["text"] for t in page.inspect()["texts"] if t["tag"] == "h1"]


@pytest.mark.parametrize("width", [375, 1000])
def test_the_forms_work_with_no_script_by_mouse_and_by_keyboard(
    browser: Browser, site: str, settings: Settings, clock: FixedClock, width: int
) -> None:
    def chosen() -> Preferences:
        return open_store(settings, clock).roster.preferences().get(READER, Preferences())

    url = reader_page(site, "preferences", clock)
    with browser.visit(url, width=width, height=2000) as page:
        boxes = page.evaluate(BOXES)
        no_scripts(page)
        click(page, boxes["One weekly digest"])
        click(page, boxes["Sales"])
        click(page, boxes["Save my choice"])
        page.browser.wait_for("Page.loadEventFired", page.session)
        assert heading(page) == ["Your choice is saved"]
    assert chosen() == Preferences(frequency=Frequency.WEEKLY, topics=("Sales",))

    clock.advance(timedelta(minutes=5))
    with browser.visit(url, width=width, height=2000) as page:
        order = tab_order(page)
        no_scripts(page)
        pause = order.index("BUTTON|Pause 8 weeks")
        page.evaluate("document.activeElement && document.activeElement.blur()")
        for _ in range(pause + 1):
            press(page, "Tab")
        press(page, "Enter")  # the keyboard's way to press the focused button
        page.browser.wait_for("Page.loadEventFired", page.session)
        assert heading(page) == ["Paused"]
        keep(page, f"preferences-paused-{width}.png")
    assert chosen().paused_until == clock.now() + timedelta(weeks=8)

    clock.advance(timedelta(minutes=5))
    leave = reader_page(site, "unsubscribe", clock)
    with browser.visit(leave, width=width, height=2000) as page:
        boxes = page.evaluate(BOXES)
        no_scripts(page)
        click(page, boxes["Pause for 4 weeks"])
        page.browser.wait_for("Page.loadEventFired", page.session)
        assert heading(page) == ["Paused"]
    assert chosen().paused_until == clock.now() + timedelta(weeks=4)
    reader = open_store(settings, clock).roster.get(READER)
    assert reader is not None
    assert reader.status is Status.ACTIVE  # paused, not gone


def test_a_page_wider_than_the_screen_is_caught(
    browser: Browser, site: str, clock: FixedClock
) -> None:
    """The checks can fail: a control pushed off the screen is reported."""
    url = reader_page(site, "preferences", clock)
    with browser.visit(url, width=375) as page:
        page.evaluate("document.querySelector('main').style.minWidth = '600px'")
        with pytest.raises(AssertionError):
            check_page(page, 375)
