"""The archive: every post ever seen, the per-feed HTTP cache, and the issue history, in memory.

::

    archive = store.archive.load()             # the archive as stored (empty when nothing is)
    archive.merge(posts, now) -> MergeResult
    archive.posts / get / new_posts / release_backlog / mark_sent / issues / record_issue
    archive.feed_cache: dict[str, FeedCache]
    store.archive.save(archive)                # stores what changed since the load

:class:`Archive` does no I/O; an :class:`~crusader_mail.storage.contract.ArchiveStore` loads
and saves it. ``revision`` is the store's mark of what the archive was loaded from (opaque to
everything else): the store checks it when saving, so an archive never overwrites one that
changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from crusader_mail.errors import StateError
from crusader_mail.models import BACKLOG, ArchivedPost, FeedCache, IssueRecord, Post


@dataclass(frozen=True)
class MergeResult:
    new: list[str]  # ids that became new (issue is None) in this merge
    updated: list[str]  # ids whose content changed (stay not-new if already sent)
    added: list[str]  # every id not seen before (incl. backlog)


class Archive:
    """Every post ever seen (by id), the feed cache and the issue history."""

    def __init__(
        self,
        posts: Iterable[ArchivedPost] = (),
        issues: Iterable[IssueRecord] = (),
        feed_cache: dict[str, FeedCache] | None = None,
        *,
        revision: object = None,
    ) -> None:
        self._posts: dict[str, ArchivedPost] = {post.id: post for post in posts}
        self._issues: dict[str, IssueRecord] = {record.issue_id: record for record in issues}
        self.feed_cache: dict[str, FeedCache] = dict(feed_cache or {})
        self.revision = revision
        # empty when loaded: the first merges fill the backlog
        self._installing = not self._posts and not self._issues

    # -- posts ---------------------------------------------------------------------------------

    @property
    def posts(self) -> list[ArchivedPost]:
        """Newest first (published descending, then id)."""
        ordered = sorted(self._posts.values(), key=lambda post: (post.published, post.id))
        return ordered[::-1]

    def get(self, post_id: str) -> ArchivedPost | None:
        return self._posts.get(post_id)

    def merge(self, posts: Iterable[Post], now: datetime, *, backfill: bool = False) -> MergeResult:
        """Add posts not seen before and update edited ones in place.

        While the archive is being filled for the first time (it was empty, with no issues,
        when loaded) every added post becomes BACKLOG, so a new installation never mails its
        whole backlog. With ``backfill`` a post older than the newest archived post is BACKLOG
        too (backfilled pages hold old posts). An edited post keeps its issue and first_seen.
        """
        newest = max((post.published for post in self._posts.values()), default=None)
        new: list[str] = []
        updated: list[str] = []
        added: list[str] = []
        for post in posts:
            known = self._posts.get(post.id)
            if known is None:
                backlog = self._installing or (
                    backfill and newest is not None and post.published < newest
                )
                data = post.model_dump()
                data.update(first_seen=now, issue=BACKLOG if backlog else None)
                self._posts[post.id] = ArchivedPost(**data)
                added.append(post.id)
                if not backlog:
                    new.append(post.id)
                continue
            changed = self._edited(known, post)
            if changed is not None:
                self._posts[post.id] = changed
                updated.append(post.id)
        return MergeResult(new=new, updated=updated, added=added)

    @staticmethod
    def _edited(known: ArchivedPost, post: Post) -> ArchivedPost | None:
        """The archived post with the feed's new content, or None when nothing changed."""
        undated = post.published == post.first_seen  # the feed gave no date: keep ours
        incoming = post.model_dump(exclude={"first_seen", "feed"})
        if undated:
            incoming["published"] = known.published
        if post.updated == post.first_seen:
            incoming["updated"] = known.updated
        current = known.model_dump(exclude={"first_seen", "feed", "issue"})
        if incoming == current:
            return None
        return ArchivedPost.model_validate({**known.model_dump(), **incoming})

    def release_backlog(self, count: int) -> list[str]:
        """The newest ``count`` BACKLOG posts become new again (``--include-backlog N``)."""
        if count <= 0:
            return []
        released = [post.id for post in self.posts if post.issue == BACKLOG][:count]
        for post_id in released:
            self._posts[post_id] = self._posts[post_id].model_copy(update={"issue": None})
        if released:
            self._installing = False
        return released

    def new_posts(self) -> list[ArchivedPost]:
        """Posts not yet sent in an issue, oldest first."""
        return [post for post in reversed(self.posts) if post.issue is None]

    def mark_sent(self, post_ids: Iterable[str], issue_id: str) -> None:
        ids = list(post_ids)
        missing = [post_id for post_id in ids if post_id not in self._posts]
        if missing:
            raise StateError(f"issue {issue_id}: post {missing[0]!r} is not in the archive")
        for post_id in ids:
            self._posts[post_id] = self._posts[post_id].model_copy(update={"issue": issue_id})
        self._installing = False

    # -- issues --------------------------------------------------------------------------------

    @property
    def issues(self) -> list[IssueRecord]:
        """Oldest first (created_at, then id)."""
        return sorted(self._issues.values(), key=lambda r: (r.created_at, r.issue_id))

    def record_issue(self, record: IssueRecord) -> None:
        self._issues[record.issue_id] = record
        self._installing = False
