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

The steps live in one module each, this package only re-exports them and runs them in order
(``run``, ``archive_stage``): ``fetching`` (fetch_stage, plan_preview), ``inbox``
(inbox_stage), ``sending`` (send_stage and each issue of a run: transport, ledger, approval
hold, what follows a sent issue), ``reports`` (what the steps report and the newsletter as
files), ``summary`` (a run's report as the lines ``run`` prints and the job summary), ``hooks`` (the progress display and the checkpoint a caller hands in).

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

from collections.abc import Sequence
from contextlib import closing, nullcontext

from crusader_mail.clock import Clock
from crusader_mail.compose.planning import (
    awaiting_issues,
    compose_record,
    plan_run,
)
from crusader_mail.delivery.batches import SendProgress
from crusader_mail.delivery.client import ClientFactory
from crusader_mail.delivery.mailer import Mailer
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.errors import (
    ComposeError,
    ConfigError,
)
from crusader_mail.inbox.process import InboxContext
from crusader_mail.pipeline.fetching import (
    FEED_FAILURES_LIMIT,
    INCLUDE_BACKLOG_HINT,
    Backlog,
    FetchStageResult,
    broken_feed_line,
    broken_feeds,
    count_of,
    fetch_feeds,
    fetch_stage,
    plan_preview,
)
from crusader_mail.pipeline.hooks import Checkpoint, Progress
from crusader_mail.pipeline.inbox import inbox_stage
from crusader_mail.pipeline.reports import (
    InboxRun,
    IssueRun,
    IssueSummary,
    NewsletterFiles,
    RunReport,
    summary_of,
    write_newsletter,
)
from crusader_mail.pipeline.sending import (
    SAMPLE_READER,
    Done,
    SendRun,
    check_approved,
    check_ways_out,
    editor_note,
    held_count,
    issue_outbox,
    send_issues,
    send_stage,
    write_held_preview,
)
from crusader_mail.publish.site import Published, build_site
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.archive import Archive
from crusader_mail.subscriptions.outbox import send_queued
from crusader_mail.subscriptions.pending import confirm_pending
from crusader_mail.subscriptions.service import expire_requests
from crusader_mail.util.masking import mask_url

__all__ = [
    "FEED_FAILURES_LIMIT",
    "INCLUDE_BACKLOG_HINT",
    "SAMPLE_READER",
    "Backlog",
    "Checkpoint",
    "FetchStageResult",
    "InboxRun",
    "IssueRun",
    "IssueSummary",
    "NewsletterFiles",
    "Progress",
    "RunReport",
    "SendRun",
    "archive_stage",
    "broken_feed_line",
    "broken_feeds",
    "check_approved",
    "check_ways_out",
    "count_of",
    "editor_note",
    "fetch_stage",
    "inbox_stage",
    "issue_outbox",
    "plan_preview",
    "run",
    "send_stage",
    "write_held_preview",
    "write_newsletter",
]


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
        fetched = fetch_feeds(
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
        done = send_issues(
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


def _still_held(archive: Archive, settings: Settings, clock: Clock, done: Done) -> None:
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
        issue = IssueRun(summary_of(plan))
        done.issues.append(issue)
        write_held_preview(plan.issue, settings, issue, held_count(done) - 1)


def _approval_notes(
    archive: Archive, settings: Settings, done: Done, dry_run: bool, approve: Sequence[str]
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
