"""Planning: which issues a run sends, which posts each carries, composed with related posts.

::

    plan_run(archive, settings, clock) -> Iterator[Plan]    the issues of this run, in order
    plan_issue(archive, settings, clock) -> Plan | None     the first of them (what preview shows)
    preview_plan(archive, settings, clock, posts=, post_url=) -> Plan   what preview shows
    compose_posts(archive, posts, settings, clock) -> Plan  an issue of chosen posts

An issue whose sending was interrupted goes out again first, composed as it was (its record in
the archive names its posts and related posts). Then come the new posts, oldest first, when at
least ``cadence.min_posts`` of them are new, at most ``cadence.max_posts`` in a run (the rest
wait): all in one issue (``digest``; a run that resumed an issue sends no other), or each in an
issue of its own (``per_post``: every one in the same run). Related posts are never posts this
run sends. Planning reads the archive and changes nothing: each plan is composed when it is
asked for, from the archive as it was when planning began, so what the caller records of the
earlier issues changes none of the later ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

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
    waiting: list[str] = field(default_factory=list)  # new post ids left for the next run


def select_posts(new_posts: Sequence[ArchivedPost], cadence: CadenceSettings) -> list[ArchivedPost]:
    """The new posts a run sends (oldest first, at most ``max_posts``); none when too few are
    new."""
    if len(new_posts) < cadence.min_posts:
        return []
    return list(new_posts[: cadence.max_posts])


def recently_related(related: Sequence[Sequence[str]], memory: int) -> set[str]:
    """Ids shown as related in the last ``memory`` issues (``related``: each issue's related
    ids, oldest first): avoided this time."""
    if memory <= 0:
        return set()
    return {post_id for ids in related[-memory:] for post_id in ids}


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
    history = [record.related_ids for record in archive.issues]
    return _compose(posts, archive.posts, history, settings, clock, issue_id, related)


def _compose(
    posts: Sequence[Post],
    pool: Sequence[Post],
    history: Sequence[Sequence[str]],
    settings: Settings,
    clock: Clock,
    issue_id: str | None = None,
    related: Sequence[Post] | None = None,
) -> Plan:
    """An issue of ``posts`` with ``related`` or, when not given, the best of ``pool`` (minus
    the issue's own posts), avoiding those shown in the last issues of ``history``."""
    if not posts:
        raise ComposeError("no posts to compose an issue from")
    shown = sorted(posts, key=lambda post: (post.published, post.id), reverse=True)
    ids = [post.id for post in shown]
    if related is None:
        in_issue = set(ids)
        related = choose_related(
            shown,
            [post for post in pool if post.id not in in_issue],
            recently_related(history, settings.compose.related_memory),
            settings.compose.related_count,
        )
    issue_id = issue_id or issue_id_for(ids, clock.now().date())
    issue = Composer(settings).compose(shown, list(related), issue_id, clock.now())
    return Plan(issue=issue, posts=list(shown), related=list(related))


def plan_run(archive: Archive, settings: Settings, clock: Clock) -> Iterator[Plan]:
    """The issues this run sends, in sending order, each composed when it is asked for."""
    unfinished = unfinished_issue(archive)
    resumed: _Resumed | None = None
    if unfinished is not None:
        resumed = _Resumed(
            unfinished.issue_id,
            _lookup(archive, unfinished.post_ids),
            _lookup(archive, unfinished.related_ids),
        )
    carried = set(unfinished.post_ids) if unfinished is not None else set()
    new_posts = [post for post in archive.new_posts() if post.id not in carried]
    per_post = settings.cadence.mode == "per_post"
    chosen = [] if resumed and not per_post else select_posts(new_posts, settings.cadence)
    groups = [[post] for post in chosen] if per_post else [chosen] if chosen else []
    in_run = carried | {post.id for post in chosen}
    waiting = [post.id for post in new_posts if post.id not in in_run]
    pool = [post for post in archive.posts if post.id not in in_run]
    history = [record.related_ids for record in archive.issues]
    return _plans(resumed, groups, pool, history, waiting, settings, clock)


@dataclass(frozen=True)
class _Resumed:
    issue_id: str
    posts: list[Post]
    related: list[Post]


def _plans(
    resumed: _Resumed | None,
    groups: Sequence[Sequence[Post]],
    pool: Sequence[Post],
    history: Sequence[Sequence[str]],
    waiting: list[str],
    settings: Settings,
    clock: Clock,
) -> Iterator[Plan]:
    if resumed is not None:
        plan = _compose(
            resumed.posts, pool, history, settings, clock, resumed.issue_id, resumed.related
        )
        yield replace(plan, resumed=True, waiting=waiting)
    history = list(history)
    for group in groups:
        plan = _compose(group, pool, history, settings, clock)
        history.append(plan.issue.related_ids)
        yield replace(plan, waiting=waiting)


def plan_issue(archive: Archive, settings: Settings, clock: Clock) -> Plan | None:
    """The next issue exactly as ``send`` would send it first, or ``None`` when nothing is due."""
    return next(plan_run(archive, settings, clock), None)


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
