"""The welcome a reader gets once they confirm: the blog's best posts, in the newsletter's
own templates (``welcome.html`` and ``welcome.txt`` beside ``newsletter.html``).

::

    best_posts(archive, picks) -> list[ArchivedPost]     which posts the welcome shows
    WelcomeMail(settings, clock, store).rendered(subject) -> RenderedIssue | str

- The best posts are the editor's (``[newsletter] welcome_posts``: links or ids, in that
  order; one the archive does not hold is left out), else the ``WELCOME_POSTS`` most often
  chosen as related posts by the issues sent (:func:`related_counts`), the newest first among
  equals (a new installation's: the newest).
- The welcome is the same for every reader but their placeholders (their address, their
  unsubscribe link), so it is rendered once (:meth:`Composer.welcome`: CSS inlined, the
  guards run) and kept ``KEEP`` long: a confirmation never waits for premailer, and a server
  shows a new post at most an hour late. The service fills in each reader's values.
- When it cannot be rendered (a broken template, a damaged archive, a welcome over the size
  limit) the answer is why, in one line, and the service queues the plain ``mail/welcome.txt``
  instead: a confirmation never fails for its welcome.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import Composer
from crusader_mail.errors import CrusaderMailError
from crusader_mail.models import ArchivedPost, RenderedIssue
from crusader_mail.settings import Settings
from crusader_mail.storage.archive import Archive
from crusader_mail.storage.contract import Store

WELCOME_POSTS = 3
KEEP = timedelta(hours=1)


def related_counts(archive: Archive) -> Counter[str]:
    """How often each post was chosen as a related post by the issues sent."""
    counts: Counter[str] = Counter()
    for record in archive.issues:
        if record.status == "sent":
            counts.update(record.related_ids)
    return counts


def best_posts(
    archive: Archive, picks: Sequence[str], count: int = WELCOME_POSTS
) -> list[ArchivedPost]:
    """The posts the welcome shows: the editor's ``picks`` the archive holds (by link or id),
    else the ``count`` most related-to, the newest first among equals."""
    chosen: list[ArchivedPost] = []
    for pick in picks:
        found = _find(archive, pick)
        if found is not None and found not in chosen:
            chosen.append(found)
    if chosen:
        return chosen
    counts = related_counts(archive)
    return sorted(archive.posts, key=lambda post: -counts[post.id])[:count]  # stable: newest first


def _find(archive: Archive, pick: str) -> ArchivedPost | None:
    wanted = pick.strip()
    found = archive.get(wanted)
    if found is not None:
        return found
    link = _link_key(wanted)
    return next((post for post in archive.posts if _link_key(post.link) == link), None)


def _link_key(link: str) -> str:
    """A link as compared with a pick: without its fragment and trailing slash."""
    return link.split("#", 1)[0].rstrip("/")


class WelcomeMail:
    """The rendered welcome of one store, kept ``KEEP`` long (one render at a time)."""

    def __init__(self, settings: Settings, clock: Clock, store: Store) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self._lock = threading.Lock()
        self._kept: tuple[datetime, str, RenderedIssue | str] | None = None

    def rendered(self, subject: str) -> RenderedIssue | str:
        """The welcome with ``subject`` (placeholders left for the reader), or why there is
        none (one line)."""
        with self._lock:
            now = self.clock.now()
            kept = self._kept
            if kept is not None and kept[1] == subject and timedelta(0) <= now - kept[0] < KEEP:
                return kept[2]
            made = self._render(subject, now)
            self._kept = (now, subject, made)
            return made

    def _render(self, subject: str, now: datetime) -> RenderedIssue | str:
        try:
            posts = best_posts(self.store.archive.load(), self.settings.newsletter.welcome_posts)
            return Composer(self.settings).welcome(posts, subject, now)
        except CrusaderMailError as error:
            return str(error)
