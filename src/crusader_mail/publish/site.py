"""The public archive of sent issues in ``archive_dir``: one page per issue, ``index.html`` and
``feed.xml`` (Atom), published at ``newsletter.archive_url`` (GitHub Pages, or ``serve``'s
``/archive/``).

::

    build_site(archive, settings, clock) -> Published     every page again (``archive build``)
    publish_sent(archive, settings, clock, fresh) -> Published   after a send: the pages of the
                                                          ``fresh`` issues and of any sent issue
                                                          without one, then index and feed

A page is the issue composed again from its record (posts, related posts, the editor's note;
:func:`crusader_mail.compose.planning.compose_record` with ``web=True``): nobody's address,
name or link in it, an invitation to subscribe instead, and it passes the mail's guards with no
placeholder allowed. The index passes the same guards (no script, every URL absolute). Only
the editor's issues whose record says ``sent`` are published (not those made for groups of
readers: they are subsets of them). Every file is written atomically; nothing is
written when one page cannot be composed. ``build_site`` also removes the pages of issues the
history no longer holds (files named like an issue id only: anything else in the folder, a
``CNAME`` or a picture, is left alone).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.compose import guards
from crusader_mail.compose.composer import Composer
from crusader_mail.compose.planning import compose_record
from crusader_mail.compose.views import date_text
from crusader_mail.errors import ConfigError, GuardError, StateError
from crusader_mail.models import IssueRecord
from crusader_mail.publish.atom import FEED_FILE, Entry, atom_feed
from crusader_mail.settings import Settings
from crusader_mail.storage.archive import Archive
from crusader_mail.util.statefile import atomic_write

INDEX_FILE = "index.html"
INDEX_TEMPLATE = "archive/index.html"
_ISSUE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,99}")
_PAGE_FILE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9A-Za-z_-]+\.html")


@dataclass
class Published:
    """What a publication wrote: the folder, the issue pages written now, how many issues the
    index lists, and the stale pages removed."""

    folder: Path
    pages: list[str] = field(default_factory=list)
    issues: int = 0
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "pages": self.pages,
            "issues": self.issues,
            "removed": self.removed,
        }


def archive_base(settings: Settings) -> str:
    """``newsletter.archive_url``; a :class:`ConfigError` when it is not set."""
    base = settings.newsletter.archive_url
    if not base:
        raise ConfigError(
            "the archive needs newsletter.archive_url: the public URL of archive_dir "
            "(GitHub Pages, or serve's /archive/)"
        )
    return base


def sent_issues(archive: Archive) -> list[IssueRecord]:
    """The editor's issues that were sent, newest first (by sending time); those made for
    groups of readers are subsets of them and never published."""
    sent = [record for record in archive.issues if record.status == "sent" and record.editors]
    return sorted(sent, key=lambda r: (r.sent_at or r.created_at, r.issue_id), reverse=True)


def page_name(issue_id: str) -> str:
    if not _ISSUE_ID.fullmatch(issue_id):
        raise StateError(f"issue id {issue_id!r} cannot name an archive page")
    return f"{issue_id}.html"


def build_site(archive: Archive, settings: Settings, clock: Clock) -> Published:
    """Rebuild the whole folder from the issue history (``crusader-mail archive build``)."""
    archive_base(settings)
    issues = sent_issues(archive)
    pages = _compose_pages(archive, issues, settings, clock)
    done = _write(archive, issues, pages, settings, clock)
    wanted = {page_name(record.issue_id) for record in issues}
    folder = settings.archive_dir
    for path in sorted(folder.glob("*.html")):
        if _PAGE_FILE.fullmatch(path.name) and path.name not in wanted:
            path.unlink()
            done.removed.append(path.name)
    return done


def publish_sent(
    archive: Archive, settings: Settings, clock: Clock, fresh: Iterable[str] = ()
) -> Published:
    """After a send: the pages of the ``fresh`` issue ids and of every sent issue without a
    page yet (``newsletter.archive_url`` set after some issues went out), then the index and
    the feed."""
    archive_base(settings)
    issues = sent_issues(archive)
    again = set(fresh)
    folder = settings.archive_dir
    due = [
        record
        for record in issues
        if record.issue_id in again or not (folder / page_name(record.issue_id)).is_file()
    ]
    return _write(archive, issues, _compose_pages(archive, due, settings, clock), settings, clock)


def _compose_pages(
    archive: Archive, issues: Sequence[IssueRecord], settings: Settings, clock: Clock
) -> dict[str, str]:
    """issue id -> its page's HTML (composed from its record, checked by the guards)."""
    pages = {}
    for record in issues:
        page_name(record.issue_id)
        plan = compose_record(archive, record, settings, clock, web=True)
        pages[record.issue_id] = plan.issue.html
    return pages


def _write(
    archive: Archive,
    issues: Sequence[IssueRecord],
    pages: dict[str, str],
    settings: Settings,
    clock: Clock,
) -> Published:
    entries = [_entry(archive, record, settings) for record in issues]
    index = render_index(entries, settings)
    updated = entries[0].sent if entries else clock.now()
    feed = atom_feed(entries, settings, updated)
    folder = settings.archive_dir
    for issue_id, html in pages.items():
        atomic_write(folder / page_name(issue_id), html)
    atomic_write(folder / INDEX_FILE, index)
    atomic_write(folder / FEED_FILE, feed)
    return Published(folder=folder, pages=list(pages), issues=len(entries))


def _entry(archive: Archive, record: IssueRecord, settings: Settings) -> Entry:
    titles = []
    for post_id in record.post_ids:
        post = archive.get(post_id)
        titles.append(post.title if post is not None else post_id)
    return Entry(
        issue_id=record.issue_id,
        title=record.subject,
        url=settings.issue_page_url(record.issue_id) or page_name(record.issue_id),
        created=record.created_at,
        sent=record.sent_at or record.created_at,
        posts=tuple(titles),
    )


def render_index(entries: Sequence[Entry], settings: Settings) -> str:
    """``index.html``: every issue, newest first, and an invitation to subscribe."""
    news = settings.newsletter
    base = archive_base(settings)
    subscribe = settings.subscribe_link
    context = {
        "newsletter": {
            "name": news.name,
            "site_url": news.site_url,
            "postal_address": news.postal_address,
        },
        "issues": [
            {
                "id": entry.issue_id,
                "subject": entry.title,
                "url": entry.url,
                "date_text": date_text(entry.sent),
                "datetime": entry.sent.date().isoformat(),
                "posts": entry.posts,
            }
            for entry in entries
        ],
        "archive_url": base,
        "feed_url": base + FEED_FILE,
        "subscribe_url": subscribe,
        "subscribe_by_mail": subscribe.startswith("mailto:"),
    }
    html = Composer(settings).render_page(INDEX_TEMPLATE, context)
    problems = guards.html_problems(html) + guards.syntax_problems("index.html", html)
    if problems:
        shown = "; ".join(problems[: guards.MAX_REPORTED])
        raise GuardError(f"archive index is not safe to publish: {shown}")
    return html
