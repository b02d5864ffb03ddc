"""Sending: each issue of a run through its transport and ledger, the approval hold, and what follows a sent issue (publish, the note file)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.compose.composer import fill_placeholders
from crusader_mail.compose.groups import plan_audience, with_groups
from crusader_mail.compose.note import check_note, clear_note, read_note
from crusader_mail.compose.planning import (
    AWAITING,
    Plan,
    awaiting_issues,
    compose_posts,
    compose_record,
    plan_record,
    plan_run,
)
from crusader_mail.delivery.audience import Audience
from crusader_mail.delivery.batches import SendProgress
from crusader_mail.delivery.client import ClientFactory
from crusader_mail.delivery.dry_run import sample_values
from crusader_mail.delivery.engine import deliver, send_test
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.delivery.transport import BatchTransport, DryRunTransport, SendGridTransport
from crusader_mail.errors import (
    CheckpointFailed,
    ComposeError,
    ConfigError,
    CrusaderMailError,
    SendError,
)
from crusader_mail.models import (
    IssueRecord,
    Placeholder,
    RenderedIssue,
    SendReport,
    Status,
)
from crusader_mail.pipeline.fetching import count_of, fetch_feeds
from crusader_mail.pipeline.hooks import Checkpoint, Progress
from crusader_mail.pipeline.reports import IssueRun, summary_of, write_newsletter
from crusader_mail.publish.site import publish_sent
from crusader_mail.settings import Settings
from crusader_mail.storage import open_store
from crusader_mail.storage.archive import Archive
from crusader_mail.storage.contract import Store

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
        fetched = fetch_feeds(store, settings, clock, save=changes_state, progress=fetch_progress)
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
        done = send_issues(
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
class Done:
    """What :func:`send_issues` did: each issue, the error that stopped it, what else
    happened (``notes``) and what went wrong after a send without failing it (``problems``)."""

    issues: list[IssueRun] = field(default_factory=list)
    error: CrusaderMailError | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def send_issues(
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
) -> Done:
    """Send the planned issues one after the other, each through its own ledger and record
    (the checkpoint runs before each one's first request), then publish each and empty the
    note file it emptied; stop at the first that fails or cannot be composed. With ``hold``
    a new issue is held for approval instead (:func:`_hold`). A dry run writes the first
    issue's newsletter and outbox to ``outbox_dir`` and each further one's to
    ``outbox_dir/issue-N``. The issues made for groups of readers follow the editor's
    (:func:`crusader_mail.compose.groups.with_groups`)."""
    done = Done()
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
        issue = IssueRun(summary_of(plan))
        done.issues.append(issue)
        try:
            if holding and not plan.resumed:
                _hold(store, archive, plan, settings, clock, issue, held_count(done) - 1)
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


def held_count(done: Done) -> int:
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
    done: Done,
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
