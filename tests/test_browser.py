"""The newsletter in a real browser: headless Chromium (Debian's chromium) shows the example issue
and real feeds from ../shared/corpus at 600 and 375 px, light and dark.

For each: no horizontal scrolling, every picture inside the column and with alt text, every
visible text at a contrast of at least 4.5:1 against what is behind it (computed styles), the
colour scheme really applied, one h1, "Read more" links named after their post in the
accessibility tree, and nothing fetched beyond 127.0.0.1 (see tests/support/browser.py).

Skipped without chromium on a developer's machine (``make services`` installs it); under CI a
missing chromium is a failure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CORPUS
from tests.support.browser import (
    NEEDS_CHROMIUM,
    Browser,
    Page,
    archive_pages,
    example_issue,
    feed_issue,
    launch,
    reader_html,
)
from tests.support.contrast import AA_TEXT, contrast, luminance, parse_color

pytestmark = NEEDS_CHROMIUM

# Real feeds of different shapes, as full posts (the hardest case for the layout):
# natasha: a WordPress iOS blog, pictures and code; many-links: the Google Testing Blog
# (Blogger), code and data tables; urdu: BBC Urdu, right to left.
FEEDS = {
    "natasha": "Ranchero-Software_RSParser__natasha.xml",
    "many-links": "rbren_rss-parser__many-links.rss",
    "urdu": "miniflux_v2__urdu_UTF8.xml",
}
ISSUES = ["example", *FEEDS]
WIDTHS = [600, 375]
SCHEMES = ["light", "dark"]


@functools.cache
def issue_html(name: str) -> str:
    if name == "example":
        return reader_html(example_issue())
    return reader_html(feed_issue(CORPUS / "feeds" / FEEDS[name], full_content=True))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from launch(tmp_path_factory)


def cases() -> Iterator[Any]:
    for name in ISSUES:
        marks = [] if name == "example" else [pytest.mark.corpus]
        for width in WIDTHS:
            for scheme in SCHEMES:
                yield pytest.param(name, width, scheme, marks=marks, id=f"{name}-{width}-{scheme}")


@pytest.fixture
def html(request: pytest.FixtureRequest) -> str:
    name = request.node.callspec.params["name"]
    if name != "example" and not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not here")
    return issue_html(name)


@pytest.mark.parametrize(("name", "width", "scheme"), list(cases()))
def test_issue_holds_in_chromium(
    browser: Browser, html: str, name: str, width: int, scheme: str
) -> None:
    holds(browser, html, width, scheme)


def holds(browser: Browser, html: str, width: int, scheme: str) -> list[str]:
    """Every check on ``html`` at ``width`` in ``scheme``; the names of its links."""
    with browser.open(html, width=width, dark=scheme == "dark") as page:
        seen = page.inspect()
        names = page.link_names()
        check_layout(seen, width)
        check_text(seen, scheme)
        check_accessible(seen, names)
        check_network(page, seen)
    return names


def check_layout(seen: dict[str, Any], width: int) -> None:
    assert seen["innerWidth"] == width
    assert seen["scrollWidth"] <= width, "the page scrolls sideways"
    column = seen["container"]
    assert column["left"] >= 0
    assert column["right"] <= width
    assert column["width"] == min(width, 600) or width > 620  # full width on phones
    for image in seen["images"]:
        assert image["left"] >= column["left"] - 0.5, image
        assert image["right"] <= column["right"] + 0.5, image
        assert image["alt"] is not None, image


def check_text(seen: dict[str, Any], scheme: str) -> None:
    assert seen["darkQuery"] == (scheme == "dark")
    column_rgb, _ = parse_color(seen["container_background"])
    if scheme == "dark":
        assert luminance(column_rgb) < 0.05, "dark mode did not darken the column"
    else:
        assert luminance(column_rgb) > 0.9
    assert len(seen["texts"]) > 20
    low = [
        (round(contrast(t["color"], t["background"]), 2), t["tag"], t["cls"], t["text"])
        for t in seen["texts"]
        if contrast(t["color"], t["background"]) < AA_TEXT
    ]
    assert low == []


def check_accessible(seen: dict[str, Any], names: list[str]) -> None:
    assert seen["h1"] == 1
    assert (seen["lang"], seen["dir"]) == ("en", "ltr")
    read_more = [n for n in names if n.startswith("Read more")]
    assert len(read_more) >= 3
    for name in read_more:  # "Read more : <the post's title>"
        assert len(name.split(":", 1)[1].strip()) > 3, name
    for hidden in seen["hidden"]:  # said, not shown
        assert hidden["width"] <= 1
        assert hidden["height"] <= 1
        assert hidden["text"].startswith(": ")


def check_network(page: Page, seen: dict[str, Any]) -> None:
    assert page.refused == []
    assert set(page.remote_addresses) == {"127.0.0.1"}  # the issue itself, nothing else
    assert {image["src"] for image in seen["images"]} <= set(page.placeholders)


def test_a_picture_wider_than_the_column_is_caught(browser: Browser) -> None:
    """The checks can fail: a picture forced wider than the column is reported."""
    wide = '<img src="https://x.example/wide.png" width="900" style="width:900px" alt="">'
    html = issue_html("example").replace('<p class="excerpt"', wide + '<p class="excerpt"', 1)
    with browser.open(html, width=375) as page:
        seen = page.inspect()
    with pytest.raises(AssertionError):
        check_layout(seen, 375)


def test_text_left_light_in_dark_mode_is_caught(browser: Browser) -> None:
    html = issue_html("example").replace(
        "  .related { background-color: #161b22 !important; }", "", 1
    )
    assert html != issue_html("example")  # related posts: light text on their light grey
    with browser.open(html, width=600, dark=True) as page:
        seen = page.inspect()
    with pytest.raises(AssertionError):
        check_text(seen, "dark")


def test_a_remote_request_is_refused_and_reported(browser: Browser) -> None:
    html = issue_html("example").replace(
        "</body>", '<iframe src="https://tracker.example/x"></iframe></body>', 1
    )
    with browser.open(html, width=600) as page:
        seen = page.inspect()
    assert page.refused == ["https://tracker.example/x"]
    with pytest.raises(AssertionError):
        check_network(page, seen)


# --- the public archive: an issue's page and the index, on a phone and a desktop ---------------


@functools.cache
def archive_html(name: str) -> str:
    return archive_pages()[name]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", [375, 1000])
def test_an_archive_page_holds_in_chromium(browser: Browser, width: int, scheme: str) -> None:
    names = holds(browser, archive_html("issue"), width, scheme)
    assert any(name.startswith("Subscribe") and "Biz Crusader" in name for name in names)
    assert "All issues" in names
    assert "View in your browser" not in names


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", [375, 1000])
def test_the_archive_index_holds_in_chromium(browser: Browser, width: int, scheme: str) -> None:
    with browser.open(archive_html("index"), width=width, dark=scheme == "dark") as page:
        seen = page.inspect()
        box = page.evaluate(
            "(() => { const r = document.querySelector('.page').getBoundingClientRect();"
            " return {left: r.left, right: r.right, width: r.width}; })()"
        )
        names = page.link_names()
    assert seen["scrollWidth"] <= width, "the page scrolls sideways"
    assert box["left"] >= 0
    assert box["right"] <= width
    assert box["width"] <= 600
    assert seen["darkQuery"] == (scheme == "dark")
    assert seen["h1"] == 1
    low = [
        (round(contrast(t["color"], t["background"]), 2), t["tag"], t["cls"], t["text"])
        for t in seen["texts"]
        if contrast(t["color"], t["background"]) < AA_TEXT
    ]
    assert low == []
    assert len(seen["texts"]) >= 8
    assert "Subscribe" in names
    assert sum(1 for name in names if name.startswith("A much longer subject")) == 1
    assert page.refused == []
    assert set(page.remote_addresses) == {"127.0.0.1"}
