"""What a run, a send and an inbox step report (to the CLI, ``--json`` and the job summary), and the newsletter written as files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crusader_mail.compose.composer import fill_placeholders
from crusader_mail.compose.groups import group_label
from crusader_mail.compose.planning import (
    Plan,
)
from crusader_mail.inbox.process import InboxReport
from crusader_mail.models import (
    FeedReport,
    Placeholder,
    RenderedIssue,
    SendReport,
)
from crusader_mail.pipeline.fetching import Backlog, broken_feeds
from crusader_mail.subscriptions.pending import PendingReport
from crusader_mail.util.statefile import atomic_write

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


def summary_of(plan: Plan) -> IssueSummary:
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
