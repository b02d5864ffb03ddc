"""The pipeline: wires the stages together, one function per step of a run.

::

    fetch_stage    feeds --reader--> posts --archive.merge--> new posts, backlog (FetchStageResult)
    plan_preview   fetch (nothing saved) + compose.planning                      (Plan)
    send_stage     fetch, plan, suppressions, then for each issue of the run:
                   RenderedIssue + roster --sender-->                            (SendRun)
    inbox_stage    [suppressions,] expired requests, readers added as pending, mail from
                   files and IMAP --inbox--> service, then the replies queued    (InboxRun)
    run            expired requests, readers added as pending, replies queued, suppressions,
                   inbox, fetch, plan, send each issue (or hold it for approval), publish
                   it, save                                                      (RunReport)
    archive_stage  the public archive rebuilt from the issue history             (Published)

Everything a step needs is passed in: settings, the clock, the SendGrid client factory, the
progress display, the checkpoint, and the store (``inbox_stage``) or the settings to open it with
(:func:`crusader_mail.storage.open_store`, once per step, handed on to the parts of a run).
The archive is loaded once per step and saved only by steps that are allowed to change state
(never by ``preview`` or a dry run). A state-changing run holds the store's run lock from start
to end, so two runs never interleave.

Rules of a real send (``run``, ``send``; not a dry run or a test send):

- It refuses (:class:`ConfigError`) when nothing would honour an unsubscribe
  (:meth:`Settings.leaving`); a dry run warns instead.
- SendGrid's suppressions are pulled before the inbox is read and before anything is sent, so
  a reader who left through SendGrid's own link is out first.
- A run sends its issues one after the other (one digest, or with ``per_post`` each new post
  as its own issue), each followed by those made from it for groups of readers
  (:mod:`crusader_mail.compose.groups`: topic variants, every-post issues, the weekly digest),
  each with its own record and ledger, and stops at the first that fails.
- Each issue's record is saved ``sending``, then the ``checkpoint`` runs (the workflow pushes
  that record, and what the issues before it left, to the repository), then its first request
  goes out. A failed checkpoint sends nothing more and puts the record back as it was.
- An issue found ``sending`` WITHOUT its delivery ledger was being sent by a run whose ledger
  never reached this copy of the state (the job died after its checkpoint): every reader is in
  doubt, and nothing is sent without ``resend_uncertain``.
- Once an issue is sent: with ``newsletter.archive_url`` its public page, the index and the
  feed are written to ``archive_dir`` (:mod:`crusader_mail.publish.site`; a failure there is a
  warning, never a failed send), and the editor's note file is emptied when the issue carried
  its note (a note given with ``--note`` leaves the file alone; a dry run, a failed send and
  ``preview`` never empty it).
- With ``cadence.approval`` a new issue is not sent: it is recorded ``awaiting_approval`` and its
  preview written to ``preview_dir`` with a made-up sample reader (:data:`SAMPLE_READER`); no
  new issue is composed while one is held. ``approve`` (``run --approve ID``) sends exactly the
  held issues named (an approved issue interrupted mid-send may be named again), and nothing
  else; any other id refuses the run before it changes anything (:class:`ConfigError`). An
  interrupted issue is resumed without a new approval. ``send`` refuses a real send while
  ``cadence.approval`` is on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import fill_placeholders
from crusader_mail.compose.groups import group_label, plan_audience, with_groups
from crusader_mail.compose.note import check_note, clear_note, read_note
from crusader_mail.compose.planning import (
    AWAITING,
    Plan,
    awaiting_issues,
    compose_posts,
    compose_record,
    plan_record,
    plan_run,
    preview_plan,
)
from crusader_mail.delivery.audience import Audience
from crusader_mail.delivery.client import ClientFactory
from crusader_mail.delivery.dry_run import sample_values
from crusader_mail.delivery.engine import SendProgress, deliver, send_test
from crusader_mail.delivery.mailer import Mailer
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.delivery.transport import BatchTransport, DryRunTransport, SendGridTransport
from crusader_mail.errors import (
    CheckpointFailed,
    ComposeError,
    ConfigError,
    CrusaderMailError,
    SendError,
)
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import FetchOutcome, backfill, read_feeds
from crusader_mail.inbox.process import InboxContext, InboxReport, process_messages
from crusader_mail.inbox.sources import ImapSource, read_paths
from crusader_mail.models import (
    BACKLOG,
    ArchivedPost,
    FeedReport,
    IssueRecord,
    Placeholder,
    RenderedIssue,
    SendReport,
    Status,
)
from crusader_mail.publish.site import Published, build_site, publish_sent
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.archive import Archive
from crusader_mail.storage.contract import Store
from crusader_mail.subscriptions.outbox import send_queued
from crusader_mail.subscriptions.pending import PendingReport, confirm_pending
from crusader_mail.subscriptions.service import expire_requests
from crusader_mail.util.masking import mask_url
from crusader_mail.util.statefile import atomic_write

Progress = SendProgress
"""Follows a long step: ``start(total)``, ``advance(count)``, ``stop()`` (feeds read, readers
sent); the CLI draws it (:mod:`crusader_mail.cli.progress`)."""

Checkpoint = Callable[[], None]
"""Run after an issue's ``sending`` record is saved and before its first request (the workflow
pushes the state); raises :class:`CheckpointFailed` when the state could not be kept."""

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
        return _fetch(
            store,
            settings,
            clock,
            include_backlog=include_backlog,
            backfill_archive=backfill_archive,
            save=save,
            progress=progress,
        )


def _fetch(
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


# --- the editor's note ------------------------------------------------------------------------


def editor_note(settings: Settings, given: str | None = None) -> str:
    """The note for the next issue (Markdown, "" for none): ``given`` (``run --note``), else
    the one in ``note_file``. Once an issue carrying a note is sent, ``note_file`` is emptied
    if it holds that very note (:func:`crusader_mail.compose.note.clear_note`)."""
    if given is not None:
        return check_note(given, "--note")
    return read_note(settings.note_file)


SAMPLE_READER: dict[Placeholder, str] = {
    Placeholder.EMAIL: "reader@preview.invalid",
    Placeholder.NAME: "Sample Reader",
    Placeholder.UNSUBSCRIBE_URL: "https://preview.invalid/unsubscribe?this-is-a-preview",
    Placeholder.PREFERENCES_URL: "https://preview.invalid/preferences?this-is-a-preview",
}
"""The made-up reader whose values fill an issue held for approval in its preview: never a
real address (``.invalid`` is a reserved domain)."""


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
    note: str = ""  # the editor's note at its top (Markdown)
    group: str = "the list"  # who it is for (compose.groups.group_label)


@dataclass
class IssueRun:
    """One issue of a run: what it carries and what its send did."""

    issue: IssueSummary
    send: SendReport | None = None  # None: not sent (held, or it could not start)
    newsletter: str | None = None  # where a dry run wrote its newsletter
    outbox: str | None = None
    held: bool = False  # awaiting approval: composed, previewed, not sent
    preview: str | None = None  # where its preview (sample reader) was written, when held
    preview_text: str | None = None  # that preview's text part (for the job summary)
    page: str | None = None  # its public archive page, once published

    def to_json(self) -> dict[str, object]:
        return {
            "issue": self.issue.__dict__,
            "send": None if self.send is None else self.send.model_dump(mode="json"),
            "newsletter": self.newsletter,
            "outbox": self.outbox,
            "held": self.held,
            "preview": self.preview,
            "page": self.page,
        }


@dataclass
class RunReport:
    """Everything a run did, merged from the stage reports. No addresses in here.

    ``issues`` lists every issue the run sent or tried to send, in order; ``issue``, ``send``,
    ``newsletter`` and ``outbox`` are the first one's (a report built with only those gets
    that one issue in ``issues``)."""

    dry_run: bool
    feeds: list[FeedReport] = field(default_factory=list)
    inbox: dict[str, object] | None = None
    replies: dict[str, int] | None = None  # replies left over from the server or a past run
    pending: dict[str, int] | None = None  # readers added as pending: asked, reminded, expired
    suppressions: dict[str, int] | None = None
    issue: IssueSummary | None = None
    send: SendReport | None = None
    newsletter: str | None = None  # where the dry run wrote the newsletter
    outbox: str | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # the send failed or did not start (one line)
    issues: list[IssueRun] = field(default_factory=list)
    backlog: Backlog | None = None  # posts this run archived as backlog
    notes: list[str] = field(default_factory=list)  # what else the run did (note, archive)

    def __post_init__(self) -> None:
        if self.issue is not None and not self.issues:
            self.issues = [IssueRun(self.issue, self.send, self.newsletter, self.outbox)]

    def add_issue(self, done: IssueRun) -> None:
        if not self.issues:
            self.issue, self.send = done.issue, done.send
            self.newsletter, self.outbox = done.newsletter, done.outbox
        self.issues.append(done)

    @property
    def failed(self) -> bool:
        """Exit 1: no feed could be read, a feed failed on :data:`FEED_FAILURES_LIMIT` runs in
        a row, a send failed or could not start (SendGrid, the checkpoint, an issue whose every
        reader is in doubt, an issue that could not be composed), or some readers could not be
        sent to. Readers in the one batch left in
        doubt by a crash are a warning, not a failure: the ledger keeps them out unless
        ``--resend-uncertain``."""
        every_feed_failed = bool(self.feeds) and all(r.status == "error" for r in self.feeds)
        sends = [done.send for done in self.issues] or [self.send]
        some_failed = any(send is not None and send.failed for send in sends)
        broken = bool(broken_feeds(self.feeds))
        return every_feed_failed or self.error is not None or some_failed or broken

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "feeds": [r.model_dump(mode="json") for r in self.feeds],
            "backlog": None if self.backlog is None else self.backlog.to_json(),
            "inbox": self.inbox,
            "replies": self.replies,
            "pending": self.pending,
            "suppressions": self.suppressions,
            "issue": None if self.issue is None else self.issue.__dict__,
            "send": None if self.send is None else self.send.model_dump(mode="json"),
            "issues": [done.to_json() for done in self.issues],
            "newsletter": self.newsletter,
            "outbox": self.outbox,
            "problems": self.problems,
            "notes": self.notes,
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
        note=plan.note,
        group=group_label(plan),
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


@dataclass
class InboxRun(InboxReport):
    """What ``inbox_stage`` did: the inbox report, the suppression counts when it synced, and
    what became of the readers added as pending."""

    suppressions: dict[str, int] | None = None
    pending: PendingReport | None = None

    def as_json(self) -> dict[str, object]:
        done: dict[str, object] = dict(super().as_json())
        if self.suppressions is not None:
            done["suppressions"] = self.suppressions
        if self.pending is not None and any(self.pending.as_json().values()):
            done["pending"] = self.pending.as_json()  # only when it did something, as "expired"
        return done


def inbox_stage(
    store: Store,
    settings: Settings,
    clock: Clock,
    mailer: Mailer,
    paths: Sequence[Path] = (),
    *,
    use_imap: bool = False,
    suppressions: ClientFactory | None = None,
) -> InboxRun:
    """Handle subscribe/confirm/unsubscribe mail, bounces and complaints from files and IMAP,
    then send the replies that are due (once the changes are stored). With ``suppressions`` (a
    SendGrid client factory) pull SendGrid's suppression lists first, so a reader who left
    through SendGrid's own link is out before any mail is handled. Requests to join never
    confirmed in time are erased first (:func:`expire_requests`), and the readers added as
    pending are asked, reminded or erased (:func:`confirm_pending`)."""
    report = InboxRun()
    if suppressions is not None:
        report.suppressions = sync_suppressions(settings, store.roster, clock, suppressions)
    report.expired = expire_requests(store, clock)
    ctx = InboxContext.create(settings, clock, store)
    report.pending = confirm_pending(ctx.service())
    if paths:
        _add_inbox(report, process_messages(read_paths(list(paths), ctx.max_bytes), ctx))
    if use_imap:
        with ImapSource(settings.imap, ctx.max_bytes) as source:
            _add_inbox(report, process_messages(source.messages(), ctx))
            source.mark_handled()
    report.replies = send_queued(store, mailer, clock)
    return report


def _add_inbox(into: InboxReport, more: InboxReport) -> None:
    into.processed += more.processed
    into.actions.extend(more.actions)


def _transport(
    settings: Settings, clock: Clock, factory: ClientFactory | None, *, dry_run: bool
) -> BatchTransport:
    """Where a send goes: the outbox in a dry run, else SendGrid."""
    if dry_run:
        return DryRunTransport(settings, clock)
    if factory is None:
        raise ConfigError("sending needs sendgrid.api_key (set SENDGRID_API_KEY)")
    return SendGridTransport(settings, clock, factory)


def _deliver_plan(
    store: Store,
    archive: Archive,
    plan: Plan,
    settings: Settings,
    clock: Clock,
    transport: BatchTransport,
    audience: Audience,
    *,
    resend_uncertain: bool,
    progress: SendProgress | None,
    checkpoint: Checkpoint | None = None,
) -> SendReport:
    """Send a planned issue for real to its ``audience``: record it as sending (so a crash
    resumes it), run the checkpoint, deliver through the ledger, then mark its posts sent
    (the editor's issues only). A failed send raises and
    leaves the issue ``sending`` with its ledger, so the next run picks it up; a send that
    failed before its first request (no ledger) puts the record back as it was."""
    sandbox = settings.sendgrid.sandbox_mode
    before: IssueRecord | None = None
    if plan.resumed:
        before = next(r for r in archive.issues if r.issue_id == plan.issue.issue_id)
        record = before
        if (
            before.status == "sending"
            and not resend_uncertain
            and not store.ledgers.exists(plan.issue.issue_id, sandbox=sandbox)
        ):
            raise _all_in_doubt(plan.issue.issue_id, store.roster.counts())
    else:
        record = plan_record(plan, clock.now(), "sending")
    if not plan.resumed or record.status != "sending":
        record = record.model_copy(update={"status": "sending"})
        archive.record_issue(record)
        store.archive.save(archive)
    try:
        if checkpoint is not None:
            checkpoint()
        sent = deliver(
            plan.issue,
            store.roster,
            store.ledgers,
            transport,
            settings,
            clock,
            resend_uncertain=resend_uncertain,
            progress=progress,
            audience=audience,
        )
    except BaseException:
        if not store.ledgers.exists(plan.issue.issue_id, sandbox=sandbox):
            # not one request went out: the issue is as it was before this run
            archive.record_issue(before or record.model_copy(update={"status": "composed"}))
            store.archive.save(archive)
        raise
    if plan.editors:  # an issue made for a group repeats posts the editor's issue sent
        archive.mark_sent(plan.issue.post_ids, plan.issue.issue_id)
    archive.record_issue(
        record.model_copy(
            update={"status": "sent", "sent_at": clock.now(), "recipients": sent.delivered}
        )
    )
    store.archive.save(archive)
    return sent


def _all_in_doubt(issue_id: str, counts: Mapping[Status, int]) -> SendError:
    """The error of an issue found ``sending`` without its ledger: every reader is in doubt."""
    active = counts.get(Status.ACTIVE, 0)
    error = SendError(
        f"issue {issue_id} is marked sending but its delivery ledger is missing (a run died "
        "while sending and its ledger never reached this copy of the state): all "
        f"{active:,} readers are in doubt and nothing was sent; check SendGrid's activity "
        "feed, then send it with --resend-uncertain if they did not get it"
    )
    error.report = SendReport(
        issue=issue_id,
        dry_run=False,
        recipients=active,
        skipped={
            status.value: counts.get(status, 0)
            for status in (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED, Status.PENDING)
        },
        uncertain=active,
    )
    return error


def check_ways_out(settings: Settings, *, dry_run: bool) -> list[str]:
    """The warnings of :meth:`Settings.leaving` for this send. A real send where nothing would
    honour an unsubscribe raises :class:`ConfigError`; a dry run gets that as a warning."""
    leaving = settings.leaving()
    problem = leaving.problem
    if problem is not None and not dry_run:
        raise ConfigError(problem)
    return [*leaving.notes, *([problem] if problem else [])]


@dataclass
class SendRun:
    """What ``send_stage`` did: each issue's send report in sending order (none: nothing was
    due), and the error that stopped the send, if one did (the reports before it stand)."""

    reports: list[SendReport] = field(default_factory=list)
    error: CrusaderMailError | None = None


def send_stage(
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    to: str | None = None,
    resend_uncertain: bool = False,
    progress: SendProgress | None = None,
    checkpoint: Checkpoint | None = None,
    fetch_progress: Progress | None = None,
) -> SendRun:
    """``crusader-mail send``: fetch, plan the issues exactly as ``run`` would, and send them.

    ``to``: a test send of the next issue to one address (no ledger, no state change); when
    nothing is due it test-sends the newest posts instead, so a new installation can be tried
    out. A real send follows the rules in the module docstring (refusal, a checkpoint before
    each issue, an issue whose every reader is in doubt) and stops at the first issue that
    fails (:attr:`SendRun.error`).
    """
    if to is None:
        check_ways_out(settings, dry_run=dry_run)
    if to is None and not dry_run and settings.cadence.approval:
        raise ConfigError(
            "cadence.approval is on: send would skip the approval; `crusader-mail run` holds "
            "each new issue and `run --approve ISSUE_ID` sends it"
        )
    with closing(open_store(settings, clock)) as store:
        return _send_stage(
            store,
            settings,
            clock,
            factory,
            dry_run,
            to,
            resend_uncertain,
            progress,
            checkpoint,
            fetch_progress,
        )


def _send_stage(
    store: Store,
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    dry_run: bool,
    to: str | None,
    resend_uncertain: bool,
    progress: SendProgress | None,
    checkpoint: Checkpoint | None,
    fetch_progress: Progress | None = None,
) -> SendRun:
    changes_state = not dry_run and to is None
    note = editor_note(settings)
    with store.run_lock() if changes_state else nullcontext():
        fetched = _fetch(store, settings, clock, save=changes_state, progress=fetch_progress)
        archive = fetched.archive
        held = awaiting_issues(archive) if to is not None else []
        if held:  # a test send shows the issue that awaits approval
            plans = iter([compose_record(archive, held[0], settings, clock)])
        else:
            plans = plan_run(archive, settings, clock, note=note)
        first = next(plans, None)
        if to is not None:
            if first is None:
                newest = archive.posts[: settings.cadence.min_posts]
                if not newest:
                    return SendRun()
                first = compose_posts(archive, newest, settings, clock, note=note)
            transport = _transport(settings, clock, factory, dry_run=dry_run)
            return SendRun([send_test(first.issue, to, transport, settings, clock)])
        if first is None:
            return SendRun()
        if not dry_run and factory is not None:
            sync_suppressions(settings, store.roster, clock, factory)
        done = _send_issues(
            store,
            archive,
            chain([first], plans),
            settings,
            clock,
            factory,
            dry_run=dry_run,
            resend_uncertain=resend_uncertain,
            progress=progress,
            checkpoint=checkpoint,
        )
        return SendRun([issue.send for issue in done.issues if issue.send is not None], done.error)


@dataclass
class _Done:
    """What :func:`_send_issues` did: each issue, the error that stopped it, what else
    happened (``notes``) and what went wrong after a send without failing it (``problems``)."""

    issues: list[IssueRun] = field(default_factory=list)
    error: CrusaderMailError | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _send_issues(
    store: Store,
    archive: Archive,
    plans: Iterator[Plan],
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    resend_uncertain: bool,
    progress: SendProgress | None,
    checkpoint: Checkpoint | None,
    hold: bool = False,
) -> _Done:
    """Send the planned issues one after the other, each through its own ledger and record
    (the checkpoint runs before each one's first request), then publish each and empty the
    note file it emptied; stop at the first that fails or cannot be composed. With ``hold``
    a new issue is held for approval instead (:func:`_hold`). A dry run writes the first
    issue's newsletter and outbox to ``outbox_dir`` and each further one's to
    ``outbox_dir/issue-N``. The issues made for groups of readers follow the editor's
    (:func:`crusader_mail.compose.groups.with_groups`)."""
    done = _Done()
    holding = hold and not dry_run
    chosen = cache(store.roster.preferences)  # read once a run, when first needed
    plans = with_groups(plans, archive, chosen, settings, clock, record=not dry_run, hold=holding)
    while True:
        try:
            plan = next(plans, None)
        except ComposeError as error:
            done.error = error
            return done
        if plan is None:
            return done
        issue = IssueRun(_summary(plan))
        done.issues.append(issue)
        try:
            if holding and not plan.resumed:
                _hold(store, archive, plan, settings, clock, issue, _held_count(done) - 1)
                continue
            if dry_run:  # the newsletter and the outbox, and no state changed
                folder = issue_outbox(settings.outbox_dir, len(done.issues) - 1)
                issue.outbox, issue.newsletter = str(folder), str(folder / "newsletter.html")
                shown = settings.model_copy(update={"outbox_dir": folder})
                write_newsletter(plan.issue, folder, sample_values(shown, clock.now()))
                issue.send = deliver(
                    plan.issue,
                    store.roster,
                    store.ledgers,
                    DryRunTransport(shown, clock),
                    shown,
                    clock,
                    progress=progress,
                    audience=plan_audience(plan, chosen(), settings, clock.now()),
                )
                continue
            issue.send = _deliver_plan(
                store,
                archive,
                plan,
                settings,
                clock,
                _transport(settings, clock, factory, dry_run=False),
                plan_audience(plan, chosen(), settings, clock.now()),
                resend_uncertain=resend_uncertain,
                progress=progress,
                checkpoint=checkpoint,
            )
        except (SendError, CheckpointFailed) as error:
            if isinstance(error, SendError) and isinstance(error.report, SendReport):
                issue.send = error.report
            done.error = error
            return done
        _after_send(archive, plan, settings, clock, issue, done)


def _held_count(done: _Done) -> int:
    return sum(1 for issue in done.issues if issue.held) + 1  # counting the one being held


def _hold(
    store: Store,
    archive: Archive,
    plan: Plan,
    settings: Settings,
    clock: Clock,
    issue: IssueRun,
    index: int,
) -> None:
    """Record a new issue as awaiting approval (its posts stay unsent) and write its preview."""
    archive.record_issue(plan_record(plan, clock.now(), AWAITING))
    store.archive.save(archive)
    write_held_preview(plan.issue, settings, issue, index)


def write_held_preview(
    rendered: RenderedIssue, settings: Settings, issue: IssueRun, index: int
) -> None:
    """The preview of an issue awaiting approval, filled in for :data:`SAMPLE_READER`, in
    ``preview_dir`` (``preview_dir/issue-N`` for the one at ``index`` > 0)."""
    folder = issue_outbox(settings.preview_dir, index)
    write_newsletter(rendered, folder, SAMPLE_READER)
    issue.held, issue.preview = True, str(folder)
    issue.preview_text = fill_placeholders(rendered.text, SAMPLE_READER)


def _after_send(
    archive: Archive,
    plan: Plan,
    settings: Settings,
    clock: Clock,
    issue: IssueRun,
    done: _Done,
) -> None:
    """What follows a real send: the note file emptied if it holds the note the issue carried,
    and the issue published (a failure there is a problem, the send stands); neither for an
    issue made for a group of readers."""
    issue_id = plan.issue.issue_id
    if not plan.editors:
        return
    if plan.note and clear_note(settings.note_file, plan.note):
        done.notes.append(
            f"the editor's note went out with issue {issue_id}: {settings.note_file} emptied"
        )
    if settings.newsletter.archive_url is None:
        return
    try:
        published = publish_sent(archive, settings, clock, fresh=[issue_id])
    except (CrusaderMailError, OSError) as error:
        done.problems.append(
            f"issue {issue_id} was sent but not published in the archive ({error}); "
            "`crusader-mail archive build` publishes it"
        )
        return
    issue.page = settings.issue_page_url(issue_id)
    done.notes.append(
        f"archive: {count_of(len(published.pages), 'page')} written to {published.folder}, "
        f"{count_of(published.issues, 'issue')} in its index and feed"
    )


def check_approved(archive: Archive, approve: Sequence[str]) -> None:
    """Refuse (:class:`ConfigError`) an ``--approve`` id that names no issue held for approval
    (or interrupted after its approval): nothing is sent then."""
    records = {record.issue_id: record for record in archive.issues}
    for issue_id in approve:
        record = records.get(issue_id)
        if record is not None and record.status == "sent":
            raise ConfigError(f"--approve {issue_id}: that issue was sent already; nothing sent")
        if record is None or record.status not in (AWAITING, "sending", "composed"):
            held = ", ".join(r.issue_id for r in awaiting_issues(archive)) or "none"
            raise ConfigError(
                f"--approve {issue_id}: no issue with this id awaits approval (awaiting: "
                f"{held}); nothing sent"
            )


def issue_outbox(outbox: Path, index: int) -> Path:
    """Where a dry run writes the issue at ``index`` (0: the first) of its run."""
    return outbox if index == 0 else outbox / f"issue-{index + 1}"


def run(
    settings: Settings,
    clock: Clock,
    factory: ClientFactory | None,
    *,
    dry_run: bool,
    include_backlog: int = 0,
    resend_uncertain: bool = False,
    progress: SendProgress | None = None,
    mailer: Mailer | None = None,
    checkpoint: Checkpoint | None = None,
    note: str | None = None,
    approve: Sequence[str] = (),
    fetch_progress: Progress | None = None,
) -> RunReport:
    """The scheduled job: requests never confirmed erased, the readers added as pending asked
    or reminded (:func:`confirm_pending`), the replies queued (by the server, an earlier run
    or this one) sent, suppressions, inbox, feeds, then compose and send what is due: one
    digest, or with ``per_post`` every new post as its own issue, one after the other.
    ``note``: the editor's note for the first new issue (else ``note_file``'s); ``approve``:
    the held issues to send (with ``cadence.approval`` new issues are held instead of sent).

    A dry run does all of it without sending or changing any state and needs no secrets (the
    inbox is left for the real run: handling mail changes the list and sends replies).
    Re-running after a failure resumes the unfinished issue first, then sends what else is
    due: the delivery ledger makes sure nobody gets an issue twice and nobody who should have
    it is skipped. A failed send, or one that could not start (checkpoint, every reader in
    doubt, composing), stops the run and is reported in :attr:`RunReport.error` with what was
    delivered so far. The rules of a real send are in the module docstring.
    """
    report = RunReport(dry_run=dry_run)
    report.problems.extend(check_ways_out(settings, dry_run=dry_run))
    note_text = editor_note(settings, note)
    with (
        closing(open_store(settings, clock)) as store,
        nullcontext() if dry_run else store.run_lock(),
    ):
        if approve:  # before anything changes: a wrong id refuses the whole run
            check_approved(store.archive.load(), approve)
        if not dry_run:
            expire_requests(store, clock)  # requests to join never confirmed in time
            service = InboxContext.create(settings, clock, store).service()
            report.pending = confirm_pending(service).as_json()  # readers added as pending
        if not dry_run and mailer is not None:  # replies left over, and those just queued
            report.replies = send_queued(store, mailer, clock).as_json()
        if not dry_run and factory is not None:
            report.suppressions = sync_suppressions(settings, store.roster, clock, factory)
        if settings.imap.host and not dry_run:
            if mailer is None:
                raise ConfigError("the inbox needs a mailer: set SENDGRID_API_KEY")
            report.inbox = inbox_stage(store, settings, clock, mailer, use_imap=True).as_json()
        fetched = _fetch(
            store,
            settings,
            clock,
            include_backlog=include_backlog,
            save=not dry_run,
            progress=fetch_progress,
        )
        report.feeds = fetched.reports
        report.backlog = fetched.backlog
        report.problems.extend(f"{mask_url(r.url)}: {r.error}" for r in fetched.reports if r.error)
        archive = fetched.archive
        approval = settings.cadence.approval and not approve
        done = _send_issues(
            store,
            archive,
            plan_run(archive, settings, clock, note=note_text, approved=approve),
            settings,
            clock,
            factory,
            dry_run=dry_run,
            resend_uncertain=resend_uncertain,
            progress=progress,
            checkpoint=checkpoint,
            hold=approval,
        )
        if approval and done.error is None and not dry_run:
            _still_held(archive, settings, clock, done)
        for issue in done.issues:
            report.add_issue(issue)
        report.notes.extend(done.notes)
        report.problems.extend(done.problems)
        report.problems.extend(_approval_notes(archive, settings, done, dry_run, approve))
        if note is not None and note_text and not any(i.issue.note for i in done.issues):
            report.problems.append("--note was not used: no new issue was due")
        if done.error is not None:
            report.error = str(done.error)
    return report


def _still_held(archive: Archive, settings: Settings, clock: Clock, done: _Done) -> None:
    """The issues held by an earlier run: their preview written again (the workflow keeps it
    as this run's artifact) and listed as held."""
    shown = {issue.issue.issue_id for issue in done.issues}
    for record in awaiting_issues(archive):
        if record.issue_id in shown:
            continue
        try:
            plan = compose_record(archive, record, settings, clock)
        except ComposeError as error:
            done.error = error
            return
        issue = IssueRun(_summary(plan))
        done.issues.append(issue)
        write_held_preview(plan.issue, settings, issue, _held_count(done) - 1)


def _approval_notes(
    archive: Archive, settings: Settings, done: _Done, dry_run: bool, approve: Sequence[str]
) -> list[str]:
    """Warnings about approval: issues left held while ``cadence.approval`` is off, and what a
    real run would do with the issues of a dry run."""
    if approve:
        return []
    if dry_run and settings.cadence.approval and done.issues:
        return ["cadence.approval is on: a real run holds new issues for approval"]
    if settings.cadence.approval:
        return []
    return [
        f"issue {record.issue_id} awaits approval: `crusader-mail run --approve "
        f"{record.issue_id}` sends it"
        for record in awaiting_issues(archive)
    ]


def archive_stage(settings: Settings, clock: Clock) -> Published:
    """``crusader-mail archive build``: the public archive in ``archive_dir`` rebuilt from the
    issue history (holds the run lock: never beside a run)."""
    with closing(open_store(settings, clock)) as store, store.run_lock():
        return build_site(store.archive.load(), settings, clock)
