"""The archive: every post ever seen, the per-feed HTTP cache, and the issue history, in memory.

::

    archive = store.archive.load()             # the archive as stored (empty when nothing is)
    archive.merge(posts, now) -> MergeResult
    archive.posts / get / new_posts / release_backlog / mark_sent / issues / issue /
    record_issue
    archive.feed_cache: dict[str, FeedCache]
    archive.record_read(source, cache, failed=...) -> int   # runs in a row the feed failed
    store.archive.save(archive)                # stores what changed since the load

:class:`Archive` does no I/O; an :class:`~crusader_mail.storage.contract.ArchiveStore` loads
and saves it. ``revision`` is the store's mark of what the archive was loaded from (opaque to
everything else): the store checks it when saving, so an archive never overwrites one that
changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from crusader_mail.errors import StateError
from crusader_mail.models import BACKLOG, ArchivedPost, FeedCache, IssueRecord, Post
from crusader_mail.util.masking import without_credentials


@dataclass(frozen=True)
class MergeResult:
    new: list[str]  # ids that became new (issue is None) in this merge
    updated: list[str]  # ids whose content changed (stay not-new if already sent)
    added: list[str]  # every id not seen before (incl. backlog)
    backlog: list[str] = field(default_factory=list)  # ids added as BACKLOG in this merge


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

        A feed's back catalogue is BACKLOG, never mailed (:meth:`_cutoffs`): every entry of
        a feed seen for the first time, so neither a new installation nor a feed added later
        mails what it published before. With ``backfill`` a post older than the newest archived
        post is BACKLOG too (backfilled pages hold old posts). An edited post keeps its issue
        and first_seen.
        """
        posts = list(posts)
        cutoffs = self._cutoffs(posts)
        newest = max((post.published for post in self._posts.values()), default=None)
        new: list[str] = []
        updated: list[str] = []
        added: list[str] = []
        backlog_ids: list[str] = []
        for post in posts:
            known = self._posts.get(post.id)
            if known is None:
                cutoff = cutoffs.get(post.feed)
                backlog = (
                    post.feed not in cutoffs  # the feed's first sight
                    or (cutoff is not None and post.published < cutoff)
                    or (backfill and newest is not None and post.published < newest)
                )
                data = post.model_dump()
                data.update(first_seen=now, issue=BACKLOG if backlog else None)
                self._posts[post.id] = ArchivedPost(**data)
                added.append(post.id)
                (backlog_ids if backlog else new).append(post.id)
                continue
            changed = self._edited(known, post)
            if changed is not None:
                self._posts[post.id] = changed
                updated.append(post.id)
        return MergeResult(new=new, updated=updated, added=added, backlog=backlog_ids)

    def _cutoffs(self, posts: Iterable[Post]) -> dict[str, datetime | None]:
        """For each feed of ``posts``, what of its unseen entries is BACKLOG.

        - A feed the archive holds posts from (by its URL, or because one of ``posts`` is
          archived already: the feed moved) is known: ``None``, its unseen entries are new.
        - A feed fetched before without a post (its HTTP cache is remembered, so it was read
          empty): entries published before the installation (the archive's first
          ``first_seen``) are BACKLOG; later ones are new. (When it was first read is not
          kept; the installation is the earliest it can have been.)
        - Any other feed is seen for the first time: absent from the answer, all BACKLOG.
        """
        batch: dict[str, set[str]] = {}
        for post in posts:
            batch.setdefault(post.feed, set()).add(post.id)
        known = {post.feed for post in self._posts.values()}
        cached = {
            without_credentials(source)
            for source, cache in self.feed_cache.items()
            if cache.ever_read  # only failures remembered: never read, seen for the first time
        }
        installed = min((post.first_seen for post in self._posts.values()), default=None)
        cutoffs: dict[str, datetime | None] = {}
        for feed, ids in batch.items():
            if feed in known or any(post_id in self._posts for post_id in ids):
                cutoffs[feed] = None
            elif feed in cached:
                cutoffs[feed] = installed
        return cutoffs

    def record_read(self, source: str, cache: FeedCache | None, *, failed: bool) -> int:
        """Remember a read of the feed ``source``: its new cache (``None``: the old one stays)
        and whether it failed. Returns how many runs in a row it has failed (0: it was read).

        A failure keeps the feed's cache and counts one more (a feed never read gets a cache of
        its failures alone, ``ever_read`` False); a read clears the count, and a cache that held
        nothing but failures (a local file's) goes."""
        old = self.feed_cache.get(source)
        if failed:
            base = old if old is not None else FeedCache(ever_read=False)
            self.feed_cache[source] = replace(base, failures=base.failures + 1)
            return base.failures + 1
        if cache is not None:
            self.feed_cache[source] = replace(cache, failures=0, ever_read=True)
        elif old is not None and not old.ever_read:
            del self.feed_cache[source]
        elif old is not None and old.failures:
            self.feed_cache[source] = replace(old, failures=0)
        return 0

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

    # -- issues --------------------------------------------------------------------------------

    @property
    def issues(self) -> list[IssueRecord]:
        """Oldest first (created_at, then id)."""
        return sorted(self._issues.values(), key=lambda r: (r.created_at, r.issue_id))

    def issue(self, issue_id: str) -> IssueRecord | None:
        return self._issues.get(issue_id)

    def record_issue(self, record: IssueRecord) -> None:
        self._issues[record.issue_id] = record
