"""Golden files of a fixed issue, and the posts the composer tests build.

Regenerate the golden files after a deliberate change to the templates or the composer::

    make golden            # = .venv/bin/python -m tests.support.golden

then review ``git diff tests/golden/`` (and look at ``tests/golden/issue.html`` in a browser)
before committing. ``tests/test_composer_golden.py`` compares a fresh render with these files.
"""

from __future__ import annotations

import html
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crusader_mail.compose.composer import Composer
from crusader_mail.models import Image, Media, Post, RenderedIssue
from crusader_mail.settings import NewsletterSettings, Settings

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
GOLDEN = REPO / "tests" / "golden"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
GOLDEN_ISSUE_ID = "2026-11-23-golden00"


def make_post(
    n: int,
    title: str | None = None,
    *,
    content: str | None = None,
    categories: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    days_ago: float | None = None,
    image: bool = False,
    author: str = "Ana Rivera",
    media: tuple[Media, ...] = (),
) -> Post:
    """Post number ``n`` (newer for smaller ``days_ago``; default: ``n`` days ago)."""
    title = title or f"Post number {n}"
    content = content if content is not None else f"<p>Body of {title.lower()}.</p>"
    published = NOW - timedelta(days=n if days_ago is None else days_ago)
    words = html.unescape(re.sub(r"<[^>]+>", " ", content)).split()
    excerpt = " ".join(words[:55]) + (" […]" if len(words) > 55 else "")
    return Post(
        id=f"https://bizcrusader.example/p/{n}",
        title=title,
        link=f"https://bizcrusader.example/p/{n}/",
        published=published,
        updated=published,
        author=author,
        categories=categories,
        tags=tags,
        summary_html=content,
        content_html=content,
        excerpt=excerpt,
        image=(
            Image(url=f"https://bizcrusader.example/img/{n}.jpg", alt="", width=1200, height=630)
            if image
            else None
        ),
        media=media,
        feed="https://bizcrusader.example/feed/",
        first_seen=published,
    )


def golden_settings(templates: Path = TEMPLATES, **compose: object) -> Settings:
    settings = Settings(
        templates_dir=templates,
        newsletter=NewsletterSettings(
            name="Biz Crusader",
            site_url="https://bizcrusader.example",
            from_email="news@bizcrusader.example",
            postal_address="Biz Crusader, 12 Market Street, Springfield, IL 62701, USA",
        ),
    )
    if compose:
        settings = settings.model_copy(
            update={"compose": settings.compose.model_copy(update=compose)}
        )
    return settings


def served_settings(templates: Path = TEMPLATES, **compose: object) -> Settings:
    """:func:`golden_settings` where serve's web pages are (``newsletter.unsubscribe_url``,
    serve beside the job): every issue links the reader's preferences and a one-click
    unsubscribe."""
    settings = golden_settings(templates, **compose)
    news = settings.newsletter.model_copy(
        update={"unsubscribe_url": "https://mail.bizcrusader.example/unsubscribe"}
    )
    server = settings.server.model_copy(update={"same_host": True})
    return settings.model_copy(update={"newsletter": news, "server": server})


def golden_posts() -> tuple[list[Post], list[Post]]:
    """(issue posts newest first, related posts): fixed text, every template feature used."""
    lead = make_post(
        1,
        "Five questions to ask before you cut your prices",
        content=(
            "<p>Discounts feel like the fastest way to win a deal. They are also the fastest "
            "way to teach a client that your first number was never real. Before you cut, "
            'ask <a href="https://bizcrusader.example/p/7/">these five questions</a> &amp; '
            "listen to the answers.</p><h2>1. What problem are they paying to solve?</h2>"
            "<ul><li>Ask about the cost of doing nothing.</li><li>Write the answer down.</li>"
            "</ul><blockquote><p>Price is what you pay; value is what you get.</p></blockquote>"
        ),
        categories=("Sales",),
        tags=("pricing", "negotiation"),
        image=True,
    )
    second = make_post(
        2,
        "A follow-up email that <actually> gets answered",
        content="<p>Short, specific, and with one question. Here is the template we use.</p>",
        categories=("Sales", "Email"),
        tags=("follow-up",),
        author="",
        media=(
            Media(
                kind="audio",
                url="https://bizcrusader.example/podcast/follow-up.mp3",
                title="Episode 12: the follow-up email",
                duration=1725,
                type="audio/mpeg",
                length=27_600_000,
                thumbnail=Image(url="https://bizcrusader.example/podcast/art.jpg"),
            ),
        ),
    )
    related = [
        make_post(
            40,
            "Why your best clients never ask for a discount",
            content="<p>" + " ".join(f"word{i}" for i in range(80)) + "</p>",
            categories=("Sales",),
        ),
        make_post(90, "Reintroduce yourself to existing clients", categories=("Clients",)),
    ]
    return [lead, second], related


def render_golden(templates: Path = TEMPLATES) -> RenderedIssue:
    posts, related = golden_posts()
    return Composer(served_settings(templates)).compose(posts, related, GOLDEN_ISSUE_ID, NOW)


def main() -> int:
    issue = render_golden()
    GOLDEN.mkdir(exist_ok=True)
    (GOLDEN / "issue.html").write_text(issue.html, encoding="utf-8")
    (GOLDEN / "issue.txt").write_text(issue.text, encoding="utf-8")
    (GOLDEN / "issue.subject.txt").write_text(
        f"{issue.subject}\n{issue.preheader}\n", encoding="utf-8"
    )
    print(f"wrote {GOLDEN}/issue.html, issue.txt, issue.subject.txt ({issue.html_bytes} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
