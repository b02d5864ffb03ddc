"""Regenerates docs/screenshots/: the example issue and a reader's own web pages in headless
Chromium, light and dark.

    make screenshots        # = .venv/bin/python scripts/screenshots.py

Writes example-600.png, example-375.png, example-600-dark.png and example-375-dark.png: the
issue ``make demo`` sends (the bundled Biz Crusader feed's three newest posts) as a reader sees
it at 600 and 375 px, its footer linking their preferences. Pictures are grey placeholders of
their declared size (nothing is fetched beyond 127.0.0.1; see tests/support/browser.py). And
preferences-*.png and unsubscribe-*.png at 1000 and 375 px: the preferences page and the
unsubscribe page with its "Pause instead?", served by the app for a made-up reader
(tests/support/pages.py). Needs chromium (``make services``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.browser import (  # noqa: E402
    EXAMPLE_NOW,
    Browser,
    example_issue,
    find_chromium,
    reader_html,
)
from tests.support.pages import pages_settings, reader_page, serving  # noqa: E402

from crusader_mail.clock import FixedClock  # noqa: E402

FOLDER = REPO / "docs" / "screenshots"
SHOTS = [(600, False), (375, False), (600, True), (375, True)]
PAGE_SHOTS = [(1000, False), (375, False), (1000, True), (375, True)]
PAGES = ("preferences", "unsubscribe")


def main() -> int:
    chromium = find_chromium()
    if chromium is None:
        print("screenshots: chromium is not installed (make services)", file=sys.stderr)
        return 1
    html = reader_html(example_issue())
    FOLDER.mkdir(parents=True, exist_ok=True)
    clock = FixedClock(EXAMPLE_NOW)
    with (
        tempfile.TemporaryDirectory() as profile,
        tempfile.TemporaryDirectory() as site,
        Browser(chromium, Path(profile)) as browser,
        serving(pages_settings(Path(site), clock), clock) as base,
    ):
        for width, dark in SHOTS:
            with browser.open(html, width=width, dark=dark) as page:
                _write(f"example-{width}{'-dark' if dark else ''}.png", page.screenshot())
        for name in PAGES:
            for width, dark in PAGE_SHOTS:
                url = reader_page(base, name, clock)
                with browser.visit(url, width=width, dark=dark) as page:
                    _write(f"{name}-{width}{'-dark' if dark else ''}.png", page.screenshot())
    return 0


def _write(name: str, png: bytes) -> None:
    path = FOLDER / name
    path.write_bytes(png)
    print(f"wrote {path.relative_to(REPO)} ({len(png) // 1024} KB)")


if __name__ == "__main__":
    sys.exit(main())
