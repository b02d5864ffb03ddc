"""The pipeline: wires the stages together, one function per step of a run.

::

    fetch_stage    feeds --reader--> posts --archive.merge--> new posts          (FetchStageResult)
    plan_issue     new posts + archive --related--> --composer--> RenderedIssue  (Plan)
    send_stage     RenderedIssue + subscribers --sender--> SendGrid              (SendReport)
    run            inbox, suppressions, fetch, plan, send, save                  (RunReport)

Everything a step needs is passed in: settings, the clock, the HTTP transport for feeds and
the SendGrid client factory. The archive is loaded once per step and saved only by steps that
are allowed to change state (never by ``preview`` or a dry run). A run holds ``state_dir/run.lock``
from start to end, so two runs never interleave.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import Composer, fill_placeholders
from crusader_mail.compose.related import choose_related
from crusader_mail.delivery.sender import ClientFactory, Mailer, deliver, send_test
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.errors import ComposeError, ConfigError, SendError
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import FetchOutcome, backfill, read_feeds
from crusader_mail.inbox.process import InboxContext, InboxReport, process_messages
from crusader_mail.inbox.sources import ImapSource, read_paths
from crusader_mail.models import (
    ArchivedPost,
    FeedReport,
    IssueRecord,
    Placeholder,
    Post,
    RenderedIssue,
    SendReport,
    issue_id_for,
)
from crusader_mail.settings import CadenceSettings, Settings
from crusader_mail.storage.files.archive import Archive
from crusader_mail.storage.files.subscribers import SubscriberList
from crusader_mail.util.statefile import atomic_write, locked


@contextmanager
def run_lock(settings: Settings) -> Iterator[None]:
    """Held for the whole of a state-changing step: one run at a time per state folder."""
    with locked(settings.state_dir / "run", timeout=5.0):
        yield


# --- fetch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchStageResult:
    reports: list[FeedReport]
    new_posts: list[ArchivedPost]  # oldest first
    archive: Archive


def fetch_stage(
    settings: Settings,
    clock: Clock,
    transport: httpx.BaseTransport | None = None,
    *,
    include_backlog: int = 0,
    backfill_archive: bool = False,
    save: bool = True,
) -> FetchStageResult:
    """Fetch every feed, merge the posts into the archive, and save it when ``save``."""
    archive = Archive.load(settings.state_dir)
    with make_client(settings.fetch, transport) as client:
        if backfill_archive:
            outcomes = [
                backfill(source, client, settings.fetch, clock) for source in settings.feeds
            ]
        else:
            outcomes = read_feeds(settings.feeds, client, settings.fetch, archive.feed_cache, clock)
    reports = _merge_outcomes(archive, outcomes, clock, backfill=backfill_archive)
    if include_backlog:
        archive.release_backlog(include_backlog)
    if save:
        archive.save(settings.state_dir)
    return FetchStageResult(reports=reports, new_posts=archive.new_posts(), archive=archive)


def _merge_outcomes(
    archive: Archive, outcomes: Sequence[FetchOutcome], clock: Clock, *, backfill: bool = False
) -> list[FeedReport]:
    reports = []
    for outcome in outcomes:
        source = outcome.report.url
        merged = archive.merge(outcome.posts, clock.now(), backfill=backfill)
        if outcome.cache is not None:
            archive.feed_cache[source] = outcome.cache
        reports.append(outcome.report.model_copy(update={"new": len(merged.new)}))
    return reports


# --- plan and compose -------------------------------------------------------------------------


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


def plan_preview(
    settings: Settings,
    clock: Clock,
    transport: httpx.BaseTransport | None = None,
    *,
    posts: int | None = None,
    post_url: str | None = None,
) -> Plan:
    """What ``preview`` shows: the next issue, or chosen posts; changes no state at all."""
    fetched = fetch_stage(settings, clock, transport, save=False)
    archive = fetched.archive
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


# --- send and run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueSummary:
    issue_id: str
    subject: str
    posts: list[str]
    related: list[str]
    html_bytes: int
    resumed: bool
    waiting: int
    notes: list[str]


@dataclass
class RunReport:
    """Everything a run did, merged from the stage reports. No addresses in here."""

    dry_run: bool
    feeds: list[FeedReport] = field(default_factory=list)
    inbox: dict[str, object] | None = None
    suppressions: dict[str, int] | None = None
    issue: IssueSummary | None = None
    send: SendReport | None = None
    newsletter: str | None = None  # where the dry run wrote the newsletter
    outbox: str | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # the send failed (SendGrid refused, or retries ran out)

    @property
    def failed(self) -> bool:
        """Exit 1: no feed could be read, or some readers could not be sent to. Readers in
        the one batch left in doubt by a crash are a warning, not a failure: the ledger keeps
        them out unless ``--resend-uncertain``."""
        every_feed_failed = bool(self.feeds) and all(r.status == "error" for r in self.feeds)
        return every_feed_failed or self.error is not None or bool(self.send and self.send.failed)

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "feeds": [r.model_dump(mode="json") for r in self.feeds],
            "inbox": self.inbox,
            "suppressions": self.suppressions,
            "issue": None if self.issue is None else self.issue.__dict__,
            "send": None if self.send is None else self.send.model_dump(mode="json"),
            "newsletter": self.newsletter,
            "outbox": self.outbox,
            "problems": self.problems,
            "error": self.error,
        }


def _summary(plan: Plan) -> IssueSummary:
    return IssueSummary(
        issue_id=plan.issue.issue_id,
        subject=plan.issue.subject,
        posts=list(plan.issue.post_ids),
        related=list(plan.issue.related_ids),
        html_bytes=plan.issue.html_bytes,
        resumed=plan.resumed,
        waiting=len(plan.waiting),
        notes=list(plan.issue.notes),
    )


@dataclass(frozen=True)
class NewsletterFiles:
    html: Path
    text: Path
    subject: Path


def write_newsletter(
    issue: RenderedIssue, folder: Path, values: Mapping[Placeholder, str] | None = None
) -> NewsletterFiles:
    """The rendered issue as files an editor can open: ``newsletter.html``, ``newsletter.txt``
    and ``subject.txt``, with the per-reader ``values`` filled in when given."""
    html, text, subject = issue.html, issue.text, issue.subject
    if values:
        html = fill_placeholders(html, values, html=True)
        text = fill_placeholders(text, values)
        subject = fill_placeholders(subject, values)
    files = NewsletterFiles(
        folder / "newsletter.html", folder / "newsletter.txt", folder / "subject.txt"
    )
    atomic_write(files.html, html)
    atomic_write(files.text, text)
    atomic_write(files.subject, subject + "\n")
    return files


def inbox_stage(
    settings: Settings,
    clock: Clock,
    mailer: Mailer,
    paths: Sequence[Path] = (),
    *,
    use_imap: bool = False,
) -> InboxReport:
    """Handle subscribe/confirm/unsubscribe mail, bounces and complaints from files and IMAP."""
    ctx = InboxContext.create(settings, clock, mailer)
    report = InboxReport()
    if paths:
        _add_inbox(report, process_messages(read_paths(list(paths), ctx.max_bytes), ctx))
    if use_imap:
        with ImapSource(settings.imap, ctx.max_bytes) as source:
            _add_inbox(report, process_messages(source.messages(), ctx))
            source.mark_handled()
    return report


def _add_inbox(into: InboxReport, more: InboxReport) -> None:
    into.processed += more.processed
    into.actions.extend(more.actions)


def _send_plan(
    archive: Archive,
    plan: Plan,
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    resend_uncertain: bool,
    progress: bool,
) -> SendReport:
    """Deliver a planned issue: for real through the ledger, or as a dry run that writes the
    newsletter and the outbox and changes nothing."""
    if dry_run:
        write_newsletter(plan.issue, settings.outbox_dir)
        readers = SubscriberList(settings.subscribers_dir, clock)
        return deliver(plan.issue, readers, settings, clock, None, dry_run=True, progress=progress)
    if factory is None:
        raise ConfigError("sending needs sendgrid.api_key (set SENDGRID_API_KEY)")
    return _deliver_plan(
        archive,
        plan,
        settings,
        clock,
        factory,
        resend_uncertain=resend_uncertain,
        progress=progress,
    )


def _deliver_plan(
    archive: Archive,
    plan: Plan,
    settings: Settings,
    clock: Clock,
    factory: ClientFactory,
    *,
    resend_uncertain: bool,
    progress: bool,
) -> SendReport:
    """Send a planned issue for real: record it as sending (so a crash resumes it), deliver
    through the ledger, then mark its posts sent. A failed send raises and leaves the issue
    ``sending`` with its ledger, so the next run picks it up."""
    record = IssueRecord(
        issue_id=plan.issue.issue_id,
        created_at=clock.now(),
        subject=plan.issue.subject,
        post_ids=plan.issue.post_ids,
        related_ids=plan.issue.related_ids,
        status="sending",
    )
    if plan.resumed:
        record = next(r for r in archive.issues if r.issue_id == plan.issue.issue_id)
    else:
        archive.record_issue(record)
        archive.save(settings.state_dir)
    readers = SubscriberList(settings.subscribers_dir, clock)
    sent = deliver(
        plan.issue,
        readers,
        settings,
        clock,
        factory,
        dry_run=False,
        resend_uncertain=resend_uncertain,
        progress=progress,
    )
    archive.mark_sent(plan.issue.post_ids, plan.issue.issue_id)
    archive.record_issue(
        record.model_copy(
            update={"status": "sent", "sent_at": clock.now(), "recipients": sent.delivered}
        )
    )
    archive.save(settings.state_dir)
    return sent


def send_stage(
    settings: Settings,
    clock: Clock,
    transport: httpx.BaseTransport | None,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    to: str | None = None,
    resend_uncertain: bool = False,
    progress: bool = False,
) -> SendReport | None:
    """``crusader-mail send``: fetch, plan the next issue exactly as ``run`` would, and send it.

    ``to``: a test send of that issue to one address (no ledger, no state change); when nothing
    is due it test-sends the newest posts instead, so a new installation can be tried out.
    ``None`` means there is nothing to send.
    """
    changes_state = not dry_run and to is None
    with run_lock(settings) if changes_state else nullcontext():
        fetched = fetch_stage(settings, clock, transport, save=changes_state)
        archive = fetched.archive
        plan = plan_issue(archive, settings, clock)
        if to is not None:
            if plan is None:
                newest = archive.posts[: settings.cadence.min_posts]
                if not newest:
                    return None
                plan = compose_posts(archive, newest, settings, clock)
            return send_test(plan.issue, to, settings, clock, factory, dry_run=dry_run)
        if plan is None:
            return None
        if not dry_run and factory is not None:
            readers = SubscriberList(settings.subscribers_dir, clock)
            sync_suppressions(settings, readers, clock, factory)
        return _send_plan(
            archive,
            plan,
            settings,
            clock,
            factory,
            dry_run=dry_run,
            resend_uncertain=resend_uncertain,
            progress=progress,
        )


def run(
    settings: Settings,
    clock: Clock,
    transport: httpx.BaseTransport | None,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    include_backlog: int = 0,
    resend_uncertain: bool = False,
    progress: bool = False,
    mailer: Mailer | None = None,
) -> RunReport:
    """The scheduled job: inbox, suppressions, feeds, then compose and send what is due.

    A dry run does all of it without sending or changing any state and needs no secrets (the
    inbox is left for the real run: handling mail changes the list and sends replies).
    Re-running after a failure resumes the unfinished issue first: the delivery ledger makes
    sure nobody gets it twice and nobody who should have it is skipped. A failed send is
    reported in :attr:`RunReport.error` with what was delivered so far.
    """
    report = RunReport(dry_run=dry_run)
    with nullcontext() if dry_run else run_lock(settings):
        if settings.imap.host and not dry_run:
            if mailer is None:
                raise ConfigError("the inbox needs a mailer: set SENDGRID_API_KEY")
            report.inbox = inbox_stage(settings, clock, mailer, use_imap=True).as_json()
        if not dry_run and factory is not None:
            readers = SubscriberList(settings.subscribers_dir, clock)
            report.suppressions = sync_suppressions(settings, readers, clock, factory)
        fetched = fetch_stage(
            settings, clock, transport, include_backlog=include_backlog, save=not dry_run
        )
        report.feeds = fetched.reports
        report.problems.extend(f"{r.url}: {r.error}" for r in fetched.reports if r.error)
        archive = fetched.archive
        plan = plan_issue(archive, settings, clock)
        if plan is None:
            return report
        report.issue = _summary(plan)
        if dry_run:
            report.newsletter = str(settings.outbox_dir / "newsletter.html")
            report.outbox = str(settings.outbox_dir)
        try:
            report.send = _send_plan(
                archive,
                plan,
                settings,
                clock,
                factory,
                dry_run=dry_run,
                resend_uncertain=resend_uncertain,
                progress=progress,
            )
        except SendError as error:
            if isinstance(error.report, SendReport):
                report.send = error.report
            report.error = str(error)
    return report
