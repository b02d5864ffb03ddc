"""The issues a run makes for groups of readers besides the editor's (who is due what is
:mod:`crusader_mail.delivery.audience`'s).

::

    with_groups(plans, archive, preferences, settings, clock, record=, hold=) -> Iterator[Plan]
    plan_audience(plan, preferences, settings, now) -> Audience   whom a plan's issue goes to
    group_label(plan) -> str                                      that group, for the report

After each of the editor's issues that goes out (new, approved, or resumed without them), the
issues made from it, each composed once with the editor's issue's related posts and note:

- a **variant** for each distinct set of its posts that readers' topics pick (other than all
  and none), sent only to them (the editor's issue leaves them out);
- with ``cadence.mode = "digest"``, for every-post readers an issue per post (oldest first;
  only those some of them get; the first carries the note).

Then, with ``cadence.mode = "per_post"`` and weekly readers, the **weekly digest**: the posts
of the editor's issues sent since the last weekly digest (or in the last 7 days, or in this
run), at most once every 7 days by the clock, and its variants. A series issue whose readers
all get a variant is still made (its record is the weekly clock and its variants' source).

Every issue has its own id (the posts' id with ``-topics``, ``-each`` or ``-weekly``), record
and ledger; "View in your browser" opens the page of the editor's issue it was made from (the
weekly digest has none). With ``record`` (a real send) the records of the issues made from the editor's
issue are put in the archive as ``composed`` before it is handed on, so they are saved with its
``sending`` record and a crash anywhere resumes all of them
(:func:`~crusader_mail.compose.planning.unfinished_issues`). They never mark posts sent nor are
published: the editor's issues alone are the series of the public archive. While new issues
are held for approval (``hold``) nothing is made for groups: it is made when they are sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache

from crusader_mail.clock import Clock
from crusader_mail.compose.planning import Plan, compose_posts, plan_record
from crusader_mail.delivery.audience import Audience, audience, has_readers, variants
from crusader_mail.models import Frequency, Post, Preferences, issue_id_for
from crusader_mail.settings import Settings
from crusader_mail.storage.archive import Archive

WEEK = timedelta(days=7)

Preferences_ = Callable[[], Mapping[str, Preferences]]
"""Reads the preferences (:meth:`~crusader_mail.storage.contract.Roster.preferences`)."""


def with_groups(
    plans: Iterator[Plan],
    archive: Archive,
    preferences: Preferences_,
    settings: Settings,
    clock: Clock,
    *,
    record: bool,
    hold: bool = False,
) -> Iterator[Plan]:
    """``plans`` with the issues made for groups of readers (see the module docstring); the
    preferences are read once, when first needed."""
    chosen = cache(preferences)
    sent: list[Post] = []
    for plan in plans:
        made: list[Plan] = []
        if plan.editors and not (hold and not plan.resumed) and not _made(archive, plan):
            made = made_from(archive, plan, chosen(), settings, clock)
            if record:
                _record(archive, made, clock.now())
        yield plan
        if plan.editors:
            sent.extend(plan.posts)
        yield from made
    if settings.cadence.mode == "per_post" and not hold:
        weekly = weekly_digest(archive, sent, chosen(), settings, clock)
        if record:
            _record(archive, weekly, clock.now())
        yield from weekly


def _made(archive: Archive, plan: Plan) -> bool:
    issue_id = plan.issue.issue_id
    return any(record.made_from == issue_id for record in archive.issues)


def _record(archive: Archive, plans: Sequence[Plan], now: datetime) -> None:
    for plan in plans:
        archive.record_issue(plan_record(plan, now, "composed"))


def made_from(
    archive: Archive,
    base: Plan,
    preferences: Mapping[str, Preferences],
    settings: Settings,
    clock: Clock,
) -> list[Plan]:
    """The variants of the editor's issue ``base`` and, with ``digest``, its every-post
    issues (see the module docstring)."""
    if not preferences:
        return []
    now, mode = clock.now(), settings.cadence.mode
    made = _variants(archive, base, preferences, settings, clock)
    if mode == "digest":
        note = base.note
        for post in sorted(base.posts, key=lambda post: (post.published, post.id)):
            if not has_readers(preferences, Frequency.EVERY_POST, [post], mode, now):
                continue
            made.append(_issue(archive, base, [post], "each", settings, clock, note=note, own=True))
            note = ""  # on the first of them
    return made


def weekly_digest(
    archive: Archive,
    sent: Sequence[Post],
    preferences: Mapping[str, Preferences],
    settings: Settings,
    clock: Clock,
) -> list[Plan]:
    """With ``per_post``: the weekly digest and its variants when due (see the module
    docstring), else nothing."""
    now, mode = clock.now(), settings.cadence.mode
    weekly = [r for r in archive.issues if r.series == Frequency.WEEKLY and r.made_from is None]
    last = max((record.created_at for record in weekly), default=None)
    if not preferences or (last is not None and now < last + WEEK):
        return []
    since = last if last is not None else now - WEEK
    ids = {
        post_id
        for record in archive.issues
        if record.editors and record.status == "sent" and (record.sent_at or now) > since
        for post_id in record.post_ids
    }
    posts: list[Post] = [post for post in archive.posts if post.id in ids]
    posts += [post for post in sent if post.id not in ids]
    if not posts or not has_readers(preferences, Frequency.WEEKLY, posts, mode, now):
        return []
    day = now.date()
    digest = compose_posts(
        archive,
        posts,
        settings,
        clock,
        issue_id=f"{issue_id_for([post.id for post in posts], day)}-weekly",
        page="",
    )
    digest = replace(digest, series=Frequency.WEEKLY)
    return [digest, *_variants(archive, digest, preferences, settings, clock)]


def _variants(
    archive: Archive,
    base: Plan,
    preferences: Mapping[str, Preferences],
    settings: Settings,
    clock: Clock,
) -> list[Plan]:
    """One issue for each distinct set of ``base``'s posts that its readers' topics pick."""
    sets = variants(preferences, base.series, base.posts, settings.cadence.mode, clock.now())
    by_id = {post.id: post for post in base.posts}
    return [
        _issue(archive, base, [by_id[post_id] for post_id in ids], "topics", settings, clock)
        for ids in sets
    ]


def _issue(
    archive: Archive,
    base: Plan,
    posts: Sequence[Post],
    kind: str,
    settings: Settings,
    clock: Clock,
    *,
    note: str | None = None,
    own: bool = False,
) -> Plan:
    """An issue of ``posts`` made from ``base`` (``own``: for every-post readers, else a
    variant for ``base``'s readers), with ``base``'s related posts."""
    series = Frequency.EVERY_POST if own else base.series
    ids = [post.id for post in posts]
    suffix = "-weekly" if series == Frequency.WEEKLY else ""
    plan = compose_posts(
        archive,
        posts,
        settings,
        clock,
        issue_id=f"{issue_id_for(ids, clock.now().date())}{suffix}-{kind}",
        related=base.related,
        note=base.note if note is None else note,
        page=base.issue.issue_id if base.editors else "",
    )
    return replace(
        plan,
        series=series,
        made_from=base.issue.issue_id,
        source=[] if own else list(base.posts),
    )


def plan_audience(
    plan: Plan, preferences: Mapping[str, Preferences], settings: Settings, now: datetime
) -> Audience:
    """Whom ``plan``'s issue goes to (:func:`crusader_mail.delivery.audience.audience`)."""
    return audience(
        preferences,
        plan.posts,
        now,
        mode=settings.cadence.mode,
        series=plan.series,
        source=plan.source or None,
    )


SERIES_LABELS = {
    None: "the list",
    Frequency.EVERY_POST: "every-post readers",
    Frequency.WEEKLY: "weekly readers",
}


def group_label(plan: Plan) -> str:
    """Who the issue is for, in a few words: ``the list``, ``weekly readers``, ``every-post
    readers``, or a variant's ``readers whose topics pick 2 of its 3 posts``."""
    if not plan.source:
        return SERIES_LABELS[plan.series]
    readers = "readers" if plan.series is None else SERIES_LABELS[plan.series]
    return f"{readers} whose topics pick {len(plan.posts)} of its {len(plan.source)} posts"
