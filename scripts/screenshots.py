"""Regenerates docs/screenshots/: the example issue in headless Chromium, light and dark.

    make screenshots        # = .venv/bin/python scripts/screenshots.py

Writes example-600.png, example-375.png, example-600-dark.png and example-375-dark.png: the
issue ``make demo`` sends (the bundled Biz Crusader feed's three newest posts) as a reader sees
it at 600 and 375 px. Pictures are grey placeholders of their declared size (nothing is fetched
beyond 127.0.0.1; see tests/support/browser.py). Needs chromium (``make services``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.browser import Browser, example_issue, find_chromium, reader_html  # noqa: E402

FOLDER = REPO / "docs" / "screenshots"
SHOTS = [(600, False), (375, False), (600, True), (375, True)]


def main() -> int:
    chromium = find_chromium()
    if chromium is None:
        print("screenshots: chromium is not installed (make services)", file=sys.stderr)
        return 1
    html = reader_html(example_issue())
    FOLDER.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, Browser(chromium, Path(profile)) as browser:
        for width, dark in SHOTS:
            with browser.open(html, width=width, dark=dark) as page:
                png = page.screenshot()
            path = FOLDER / f"example-{width}{'-dark' if dark else ''}.png"
            path.write_bytes(png)
            print(f"wrote {path.relative_to(REPO)} ({len(png) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
