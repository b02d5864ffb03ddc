"""Planning an issue: which posts the next one carries, and composing it with related posts.

::

    plan_issue(archive, settings, clock) -> Plan | None     the next issue, exactly as send sends it
    preview_plan(archive, settings, clock, posts=, post_url=) -> Plan   what preview shows
    compose_posts(archive, posts, settings, clock) -> Plan  an issue of chosen posts

An issue whose sending was interrupted goes out again first, composed as it was (its record in
the archive names its posts and related posts). Otherwise the new posts, oldest first, fill an
issue when there are at least ``cadence.min_posts`` of them. Planning reads the archive and
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import Composer
from crusader_mail.compose.related import choose_related
from crusader_mail.errors import ComposeError
from crusader_mail.models import ArchivedPost, IssueRecord, Post, RenderedIssue, issue_id_for
from crusader_mail.settings import CadenceSettings, Settings
from crusader_mail.storage.archive import Archive


@dataclass(frozen=True)
class Plan:
    issue: RenderedIssue
    posts: list[Post]
    related: list[Post]
    resumed: bool = False  # an issue whose sending was interrupted, composed again as it was
    waiting: list[str] = field(default_factory=list)  # new post ids left for the next issue


def select_posts(new_posts: Sequence[ArchivedPost], cadence: CadenceSettings) -> list[ArchivedPost]:
    """The posts the next issue carries (oldest first); empty when too few are new."""
    if len(new_posts) < cadence.min_posts:
        return []
    limit = 1 if cadence.mode == "per_post" else cadence.max_posts
    return list(new_posts[:limit])


def recently_related(archive: Archive, memory: int) -> set[str]:
    """Ids shown as related in the last ``memory`` issues: avoided this time."""
    if memory <= 0:
        return set()
    recent = archive.issues[-memory:]
    return {post_id for record in recent for post_id in record.related_ids}


def unfinished_issue(archive: Archive) -> IssueRecord | None:
    """An issue whose sending started and did not finish: it goes out before anything new."""
    pending = [record for record in archive.issues if record.status != "sent"]
    return pending[-1] if pending else None


def compose_posts(
    archive: Archive,
    posts: Sequence[Post],
    settings: Settings,
    clock: Clock,
    *,
    issue_id: str | None = None,
    related: Sequence[Post] | None = None,
) -> Plan:
    """Compose an issue of ``posts`` (newest shown first) with related posts from the archive."""
    if not posts:
        raise ComposeError("no posts to compose an issue from")
    shown = sorted(posts, key=lambda post: (post.published, post.id), reverse=True)
    ids = [post.id for post in shown]
    if related is None:
        in_issue = set(ids)
        candidates = [post for post in archive.posts if post.id not in in_issue]
        related = choose_related(
            shown,
            candidates,
            recently_related(archive, settings.compose.related_memory),
            settings.compose.related_count,
        )
    issue_id = issue_id or issue_id_for(ids, clock.now().date())
    issue = Composer(settings).compose(shown, list(related), issue_id, clock.now())
    return Plan(issue=issue, posts=list(shown), related=list(related))


def plan_issue(archive: Archive, settings: Settings, clock: Clock) -> Plan | None:
    """The next issue exactly as ``send`` would send it, or ``None`` when nothing is due."""
    unfinished = unfinished_issue(archive)
    if unfinished is not None:
        posts = _lookup(archive, unfinished.post_ids)
        related = _lookup(archive, unfinished.related_ids)
        plan = compose_posts(
            archive, posts, settings, clock, issue_id=unfinished.issue_id, related=related
        )
        return Plan(issue=plan.issue, posts=plan.posts, related=plan.related, resumed=True)
    new_posts = archive.new_posts()
    chosen = select_posts(new_posts, settings.cadence)
    if not chosen:
        return None
    plan = compose_posts(archive, chosen, settings, clock)
    chosen_ids = {post.id for post in chosen}
    waiting = [post.id for post in new_posts if post.id not in chosen_ids]
    return Plan(issue=plan.issue, posts=plan.posts, related=plan.related, waiting=waiting)


def _lookup(archive: Archive, post_ids: Sequence[str]) -> list[Post]:
    posts: list[Post] = []
    for post_id in post_ids:
        post = archive.get(post_id)
        if post is None:
            raise ComposeError(f"issue history names post {post_id!r}, which the archive lacks")
        posts.append(post)
    return posts


def preview_plan(
    archive: Archive,
    settings: Settings,
    clock: Clock,
    *,
    posts: int | None = None,
    post_url: str | None = None,
) -> Plan:
    """What ``preview`` shows: the post at ``post_url``, the newest ``posts``, or else the
    next issue (:class:`ComposeError` when nothing is due)."""
    if post_url is not None:
        match = [post for post in archive.posts if post.link == post_url or post.id == post_url]
        if not match:
            raise ComposeError(f"{post_url}: no post with this link in the archive")
        return compose_posts(archive, match[:1], settings, clock)
    if posts is not None:
        if posts < 1:
            raise ComposeError("--posts needs a number of at least 1")
        newest = archive.posts[:posts]
        if not newest:
            raise ComposeError("the archive is empty: no feed gave any post")
        return compose_posts(archive, newest, settings, clock)
    plan = plan_issue(archive, settings, clock)
    if plan is None:
        raise ComposeError(
            "nothing new to preview (all posts were sent or predate the installation); "
            "use --posts N or --post URL to preview chosen posts"
        )
    return plan
