"""Planning: which issues a run sends, which posts each carries, composed with related posts.

::

    plan_run(archive, settings, clock, note=, approved=) -> Iterator[Plan]   this run's issues
    plan_record(plan, now, status) -> IssueRecord            its record in the issue history
    plan_issue(archive, settings, clock, note=) -> Plan | None   the first of them
    preview_plan(archive, settings, clock, posts=, post_url=, note=) -> Plan   what preview shows
    compose_posts(archive, posts, settings, clock, note=) -> Plan   an issue of chosen posts
    compose_record(archive, record, settings, clock, web=) -> Plan  an issue as its record says
    awaiting_issues(archive) -> list[IssueRecord]            issues held for approval

Issues whose sending was interrupted go out again first, composed as they were (each record in
the archive names its posts, related posts and note; the editor's before those made for groups
of readers, :mod:`crusader_mail.compose.groups`). Then come the new posts, oldest first, when at
least ``cadence.min_posts`` of them are new, at most ``cadence.max_posts`` in a run (the rest
wait): all in one issue (``digest``; a run that resumed issues sends no other), or each in an
issue of its own (``per_post``: every one in the same run). Related posts are never posts this
run sends. Planning reads the archive and changes nothing: each plan is composed when it is
asked for, from the archive as it was when planning began, so what the caller records of the
earlier issues changes none of the later ones.

The editor's ``note`` goes at the top of the first new issue, unless an issue it plans from its
record already carries it (an interrupted or held issue composed with it). Issues held for
approval (``awaiting_approval``) keep their posts: no new issue carries them, and none is
planned while one is held and ``cadence.approval`` is on. ``approved`` plans exactly those held
(or interrupted) issues, in the order of the history, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import Composer
from crusader_mail.compose.related import choose_related
from crusader_mail.errors import ComposeError
from crusader_mail.models import (
    ArchivedPost,
    Frequency,
    IssueRecord,
    IssueStatus,
    Post,
    RenderedIssue,
    issue_id_for,
)
from crusader_mail.settings import CadenceSettings, Settings
from crusader_mail.storage.archive import Archive


@dataclass(frozen=True)
class Plan:
    issue: RenderedIssue
    posts: list[Post]
    related: list[Post]
    resumed: bool = False  # composed again as its record says (interrupted, or approved)
    waiting: list[str] = field(default_factory=list)  # new post ids left for the next run
    note: str = ""  # the editor's note at its top (Markdown source)
    series: Frequency | None = None  # made for a series of its own (None: the editor's)
    made_from: str | None = None  # made for a group from this issue (None: the editor's)
    source: list[Post] = field(default_factory=list)  # a variant: the posts its readers'
    # topics pick from (those of the issue it was made from); empty: its own posts

    @property
    def editors(self) -> bool:
        """Is it the editor's issue (not one made for a group of readers)?"""
        return self.series is None and self.made_from is None


def plan_record(plan: Plan, now: datetime, status: IssueStatus) -> IssueRecord:
    """The issue history's record of ``plan``'s issue, created at ``now``."""
    return IssueRecord(
        issue_id=plan.issue.issue_id,
        created_at=now,
        subject=plan.issue.subject,
        post_ids=plan.issue.post_ids,
        related_ids=plan.issue.related_ids,
        status=status,
        note=plan.note,
        series=plan.series,
        made_from=plan.made_from,
    )


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


AWAITING: IssueStatus = "awaiting_approval"


def unfinished_issues(archive: Archive) -> list[IssueRecord]:
    """The issues whose sending started and did not finish (or, made for groups of readers,
    did not start): they go out before anything new, the editor's first."""
    pending = [record for record in archive.issues if record.status in ("composed", "sending")]
    return sorted(pending, key=lambda record: not record.editors)  # stable: history order


def awaiting_issues(archive: Archive) -> list[IssueRecord]:
    """The issues held for approval (``cadence.approval``), oldest first."""
    return [record for record in archive.issues if record.status == AWAITING]


def related_history(archive: Archive) -> list[tuple[str, ...]]:
    """The related ids of each of the editor's issues, oldest first (those made for groups of
    readers repeat them)."""
    return [record.related_ids for record in archive.issues if record.editors]


def compose_posts(
    archive: Archive,
    posts: Sequence[Post],
    settings: Settings,
    clock: Clock,
    *,
    issue_id: str | None = None,
    related: Sequence[Post] | None = None,
    note: str = "",
    page: str | None = None,
) -> Plan:
    """Compose an issue of ``posts`` (newest shown first) with related posts from the archive
    (``page``: see :meth:`Composer.compose`)."""
    history = related_history(archive)
    return _compose(posts, archive.posts, history, settings, clock, issue_id, related, note, page)


def compose_record(
    archive: Archive, record: IssueRecord, settings: Settings, clock: Clock, *, web: bool = False
) -> Plan:
    """The issue ``record`` names, composed again: its posts, related posts and note. ``web``:
    its public archive page, dated as the issue was created."""
    posts = _lookup(archive, record.post_ids)
    related = _lookup(archive, record.related_ids)
    if web:
        shown = _newest_first(posts)
        page = Composer(settings).compose(
            shown, related, record.issue_id, record.created_at, note=record.note, web=True
        )
        return Plan(issue=page, posts=shown, related=related, resumed=True, note=record.note)
    made_from = archive.issue(record.made_from) if record.made_from else None
    opens = made_from.issue_id if made_from is not None and made_from.editors else ""
    opens_own = None if record.editors else opens  # the page "View in your browser" opens
    plan = _compose(
        posts, (), (), settings, clock, record.issue_id, related, record.note, opens_own
    )
    variant = made_from is not None and made_from.series == record.series
    return replace(
        plan,
        resumed=True,
        series=record.series,
        made_from=record.made_from,
        source=_lookup(archive, made_from.post_ids) if made_from and variant else [],
    )


def _newest_first(posts: Sequence[Post]) -> list[Post]:
    return sorted(posts, key=lambda post: (post.published, post.id), reverse=True)


def _compose(
    posts: Sequence[Post],
    pool: Sequence[Post],
    history: Sequence[Sequence[str]],
    settings: Settings,
    clock: Clock,
    issue_id: str | None = None,
    related: Sequence[Post] | None = None,
    note: str = "",
    page: str | None = None,
) -> Plan:
    """An issue of ``posts`` with ``related`` or, when not given, the best of ``pool`` (minus
    the issue's own posts), avoiding those shown in the last issues of ``history``."""
    if not posts:
        raise ComposeError("no posts to compose an issue from")
    shown = _newest_first(posts)
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
    issue = Composer(settings).compose(
        shown, list(related), issue_id, clock.now(), note=note, page=page
    )
    return Plan(issue=issue, posts=list(shown), related=list(related), note=note)


def plan_run(
    archive: Archive,
    settings: Settings,
    clock: Clock,
    *,
    note: str = "",
    approved: Sequence[str] = (),
) -> Iterator[Plan]:
    """The issues this run sends, in sending order, each composed when it is asked for."""
    if approved:
        chosen_records = [record for record in archive.issues if record.issue_id in approved]
        return (compose_record(archive, record, settings, clock) for record in chosen_records)
    unfinished = unfinished_issues(archive)
    held = awaiting_issues(archive)
    carried = {post_id for record in [*held, *unfinished] for post_id in record.post_ids}
    new_posts = [post for post in archive.new_posts() if post.id not in carried]
    per_post = settings.cadence.mode == "per_post"
    blocked = (unfinished and not per_post) or (held and settings.cadence.approval)
    chosen = [] if blocked else select_posts(new_posts, settings.cadence)
    groups = [[post] for post in chosen] if per_post else [chosen] if chosen else []
    in_run = carried | {post.id for post in chosen}
    waiting = [post.id for post in new_posts if post.id not in in_run]
    pool = [post for post in archive.posts if post.id not in in_run]
    history = related_history(archive)
    if any(record.note == note for record in [*held, *unfinished]):
        note = ""  # an issue composed with it carries it already
    return _plans(archive, unfinished, groups, pool, history, waiting, note, settings, clock)


def _plans(
    archive: Archive,
    unfinished: Sequence[IssueRecord],
    groups: Sequence[Sequence[Post]],
    pool: Sequence[Post],
    history: Sequence[Sequence[str]],
    waiting: list[str],
    note: str,
    settings: Settings,
    clock: Clock,
) -> Iterator[Plan]:
    for record in unfinished:
        yield replace(compose_record(archive, record, settings, clock), waiting=waiting)
    history = list(history)
    for group in groups:
        plan = _compose(group, pool, history, settings, clock, note=note)
        note = ""  # the first new issue carries it
        history.append(plan.issue.related_ids)
        yield replace(plan, waiting=waiting)


def plan_issue(
    archive: Archive, settings: Settings, clock: Clock, *, note: str = ""
) -> Plan | None:
    """The next issue exactly as ``send`` would send it first, or ``None`` when nothing is due."""
    return next(plan_run(archive, settings, clock, note=note), None)


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
    note: str = "",
) -> Plan:
    """What ``preview`` shows: the post at ``post_url``, the newest ``posts``, or else the
    next issue: the first held for approval, else what a run would send first
    (:class:`ComposeError` when nothing is due). ``note``: the editor's note, shown on top of
    chosen posts and of a new issue (a held one shows its own)."""
    if post_url is not None:
        match = [post for post in archive.posts if post.link == post_url or post.id == post_url]
        if not match:
            raise ComposeError(f"{post_url}: no post with this link in the archive")
        return compose_posts(archive, match[:1], settings, clock, note=note)
    if posts is not None:
        if posts < 1:
            raise ComposeError("--posts needs a number of at least 1")
        newest = archive.posts[:posts]
        if not newest:
            raise ComposeError("the archive is empty: no feed gave any post")
        return compose_posts(archive, newest, settings, clock, note=note)
    held = awaiting_issues(archive)
    if held:
        return compose_record(archive, held[0], settings, clock)
    plan = plan_issue(archive, settings, clock, note=note)
    if plan is None:
        raise ComposeError(
            "nothing new to preview (all posts were sent or predate the installation); "
            "use --posts N or --post URL to preview chosen posts"
        )
    return plan
