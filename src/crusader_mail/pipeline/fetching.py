"""The fetch step (feeds into the archive: new posts, backlog, failing feeds) and the preview's plan."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field

from crusader_mail.clock import Clock
from crusader_mail.compose.note import read_note
from crusader_mail.compose.planning import (
    Plan,
    preview_plan,
)
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import FetchOutcome, backfill, read_feeds
from crusader_mail.models import (
    BACKLOG,
    ArchivedPost,
    FeedReport,
)
from crusader_mail.pipeline.hooks import Progress
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.archive import Archive
from crusader_mail.storage.contract import Store
from crusader_mail.util.masking import mask_url

# --- fetch ------------------------------------------------------------------------------------


INCLUDE_BACKLOG_HINT = "`crusader-mail run --include-backlog N` sends the N newest"


@dataclass(frozen=True)
class Backlog:
    """The posts a fetch archived as backlog and did not release: published before their feed
    was first seen (or, with ``--backfill``, older than the archive). No issue carries them
    unless ``--include-backlog N`` asks for the N newest."""

    feeds: dict[str, int] = field(default_factory=dict)  # feed URL -> posts
    first_run: bool = False  # the archive was empty: the installation's first fetch

    @property
    def posts(self) -> int:
        return sum(self.feeds.values())

    def notes(self, shown: Callable[[str], str] = str) -> list[str]:
        """One line for the editor (feed URLs masked, then passed through ``shown``: the job
        summary escapes what a feed controls); none when nothing went to the backlog."""
        if self.first_run and self.posts:
            return [
                f"first run: {count_of(self.posts, 'post')} already in the feeds archived as "
                f"backlog, not sent; {INCLUDE_BACKLOG_HINT}"
            ]
        return [
            f"feed {shown(mask_url(url))}: {count_of(posts, 'earlier post')} archived as backlog; "
            + INCLUDE_BACKLOG_HINT
            for url, posts in self.feeds.items()
            if posts
        ]

    def to_json(self) -> dict[str, object]:
        return {"first_run": self.first_run, "posts": self.posts, "feeds": dict(self.feeds)}


FEED_FAILURES_LIMIT = 3
"""A feed that failed on this many runs in a row fails the run: a broken feed is not left to
go unnoticed week after week (one failure, a server's bad day, is only reported)."""


def broken_feeds(reports: Sequence[FeedReport]) -> list[FeedReport]:
    """The feeds that failed on :data:`FEED_FAILURES_LIMIT` runs in a row or more."""
    return [report for report in reports if report.failures >= FEED_FAILURES_LIMIT]


def broken_feed_line(report: FeedReport) -> str:
    """One line naming a broken feed (masked), how long it has failed and its last error."""
    return (
        f"feed {mask_url(report.url)} has failed on {report.failures} runs in a row (last: "
        f"{report.error}): fix its URL in feeds, or remove it"
    )


def count_of(number: int, noun: str) -> str:
    """``1 post``, ``1,234 posts``."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


@dataclass(frozen=True)
class FetchStageResult:
    reports: list[FeedReport]
    new_posts: list[ArchivedPost]  # oldest first
    archive: Archive
    backlog: Backlog = field(default_factory=Backlog)


def fetch_stage(
    settings: Settings,
    clock: Clock,
    *,
    include_backlog: int = 0,
    backfill_archive: bool = False,
    save: bool = True,
    progress: Progress | None = None,
) -> FetchStageResult:
    """Fetch every feed, merge the posts into the archive, and save it when ``save``."""
    with closing(open_store(settings, clock)) as store:
        return fetch_feeds(
            store,
            settings,
            clock,
            include_backlog=include_backlog,
            backfill_archive=backfill_archive,
            save=save,
            progress=progress,
        )


def fetch_feeds(
    store: Store,
    settings: Settings,
    clock: Clock,
    *,
    include_backlog: int = 0,
    backfill_archive: bool = False,
    save: bool,
    progress: Progress | None = None,
) -> FetchStageResult:
    archive = store.archive.load()
    first_run = not archive.posts and not archive.issues
    with make_client(settings.fetch) as client, _following(progress, len(settings.feeds)):

        def read(outcome: FetchOutcome) -> None:
            if progress is not None:
                progress.advance(1)

        if backfill_archive:
            outcomes = []
            for source in settings.feeds:
                outcomes.append(backfill(source, client, settings.fetch, clock))
                read(outcomes[-1])
        else:
            outcomes = read_feeds(
                settings.feeds, client, settings.fetch, archive.feed_cache, clock, on_read=read
            )
    reports, backlog = _merge_outcomes(archive, outcomes, clock, backfill=backfill_archive)
    if include_backlog:
        archive.release_backlog(include_backlog)
    if save:
        store.archive.save(archive)
    kept = {
        source: sum(1 for post_id in ids if _is_backlog(archive, post_id))
        for source, ids in backlog.items()
    }
    return FetchStageResult(
        reports=reports,
        new_posts=archive.new_posts(),
        archive=archive,
        backlog=Backlog(feeds={k: v for k, v in kept.items() if v}, first_run=first_run),
    )


@contextmanager
def _following(progress: Progress | None, total: int) -> Iterator[None]:
    """``progress`` started with ``total`` for the block, and stopped after it."""
    if progress is None:
        yield
        return
    progress.start(total)
    try:
        yield
    finally:
        progress.stop()


def _is_backlog(archive: Archive, post_id: str) -> bool:
    post = archive.get(post_id)
    return post is not None and post.issue == BACKLOG


def _merge_outcomes(
    archive: Archive, outcomes: Sequence[FetchOutcome], clock: Clock, *, backfill: bool = False
) -> tuple[list[FeedReport], dict[str, list[str]]]:
    """Each feed's report with its new posts counted, and the ids each archived as backlog."""
    reports = []
    backlog: dict[str, list[str]] = {}
    for outcome in outcomes:
        source = outcome.report.url
        merged = archive.merge(outcome.posts, clock.now(), backfill=backfill)
        failed = outcome.report.status == "error"
        failures = archive.record_read(source, outcome.cache, failed=failed)
        reports.append(
            outcome.report.model_copy(update={"new": len(merged.new), "failures": failures})
        )
        if merged.backlog:
            backlog[source] = merged.backlog
    return reports, backlog


# --- preview ----------------------------------------------------------------------------------


def plan_preview(
    settings: Settings,
    clock: Clock,
    *,
    posts: int | None = None,
    post_url: str | None = None,
) -> Plan:
    """What ``preview`` shows: the next issue, or chosen posts, with the editor's note (from
    ``note_file``); changes no state at all."""
    note = read_note(settings.note_file)
    fetched = fetch_stage(settings, clock, save=False)
    return preview_plan(fetched.archive, settings, clock, posts=posts, post_url=post_url, note=note)
