"""Typed values passed between the stages.

    reader  --Post-->  archive  --Post-->  related/composer  --RenderedIssue-->  sender
    subscribers  --Subscriber-->  sender / inbox / server
    every stage  --*Report-->  cli (printed as a table or JSON)

Models are immutable (pydantic models, and the :class:`FeedCache` dataclass); a stage returns
new values, it never edits its input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# --- posts ------------------------------------------------------------------------------------


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Image(Frozen):
    """A picture of a post. Its size is what the feed or the HTML declared, when they did."""

    url: str  # absolute http(s)
    alt: str = ""
    width: int | None = None  # pixels, as declared; None: unknown
    height: int | None = None


MediaKind = Literal["audio", "video"]


class Media(Frozen):
    """Something to listen to or watch: a podcast enclosure, a video file or a hosted video."""

    kind: MediaKind
    url: str  # absolute http(s): the file, or the video's page
    title: str = ""  # plain text; the post's title when the feed names none
    duration: int | None = None  # seconds
    type: str = ""  # MIME type ("audio/mpeg"); "text/html": a hosted video's page; "": unknown
    length: int | None = None  # bytes, when the feed gives a size
    thumbnail: Image | None = None  # episode art or video still


class Post(Frozen):
    """One feed entry, sanitized and normalized. Every URL in it is absolute."""

    id: str  # guid, else link, else "sha256:" + hash of title and content
    title: str  # plain text, never empty
    link: str  # absolute
    published: datetime  # timezone-aware UTC; first_seen when the feed has no date
    updated: datetime  # timezone-aware UTC
    author: str = ""
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    summary_html: str = ""  # sanitized HTML
    content_html: str = ""  # sanitized HTML (summary_html when the feed has no full content)
    excerpt: str = ""  # plain text: first 55 words + " […]" (whole when shorter)
    image: Image | None = None  # lead image: the post's own first real picture
    media: tuple[Media, ...] = ()  # audio and video to offer (enclosures, media:content)
    feed: str  # the feed URL or path it came from
    first_seen: datetime


class ArchivedPost(Post):
    """A post as the archive keeps it: which issue carried it (``None``: new)."""

    issue: str | None = None  # issue id, or BACKLOG for posts present at installation


BACKLOG = "backlog"


# --- fetching ---------------------------------------------------------------------------------

FeedStatus = Literal["ok", "not_modified", "error"]


@dataclass(frozen=True)
class FeedCache:
    """Per-feed memory, kept in the archive: the HTTP validators and a permanent redirect, and
    how many runs in a row the feed failed (``ever_read`` is False while it never was read:
    only its failures are remembered then)."""

    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = None
    failures: int = 0
    ever_read: bool = True


class FeedReport(Frozen):
    url: str
    status: FeedStatus
    entries: int = 0
    new: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = ()
    permanent_redirect: str | None = None  # the new URL, when the feed moved for good
    discovered: str | None = None  # the feed a web page linked, read instead of the page
    failures: int = 0  # runs in a row this feed failed, this one included (0: it was read)


# --- issues -----------------------------------------------------------------------------------


class Placeholder(StrEnum):
    """Per-reader values. They survive Jinja, premailer and escaping untouched, and are filled
    in at send time by plain string substitution (SendGrid ``substitutions``)."""

    UNSUBSCRIBE_URL = "[[unsubscribe_url]]"
    PREFERENCES_URL = "[[preferences_url]]"  # only where serve's pages are (served_page)
    EMAIL = "[[email]]"
    NAME = "[[name]]"


class RenderedIssue(Frozen):
    """The composer's product: one finished newsletter, the same for every reader."""

    issue_id: str
    subject: str
    preheader: str
    html: str  # CSS inlined, placeholders intact
    text: str
    placeholders: tuple[Placeholder, ...]
    post_ids: tuple[str, ...]
    related_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()  # e.g. "switched 2 long posts to excerpts (HTML over 102 KB)"

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


IssueStatus = Literal["composed", "sending", "sent", "awaiting_approval"]
"""``awaiting_approval``: composed and held (``cadence.approval``) until ``run --approve`` sends
it; ``composed``: put back after a send that failed before its first request; ``sending``:
its first request may have gone out (a rerun resumes it); ``sent``: every reader has it."""


class IssueRecord(Frozen):
    """One line of the issue history (``state_dir/issues.jsonl``)."""

    issue_id: str
    created_at: datetime
    subject: str
    post_ids: tuple[str, ...]
    related_ids: tuple[str, ...]
    status: IssueStatus
    sent_at: datetime | None = None
    recipients: int = 0
    note: str = ""  # the editor's note at the top of the issue (Markdown source, as written)
    series: Frequency | None = None  # whose cadence: None the editor's (``cadence.mode``)
    made_from: str | None = None  # the issue whose posts it was made from (a group's issue)

    @property
    def editors(self) -> bool:
        """Is it an issue of the editor's series (published, marks its posts sent), not one
        made for a group of readers (:mod:`crusader_mail.compose.groups`)?"""
        return self.series is None and self.made_from is None


# --- subscribers ------------------------------------------------------------------------------


class Status(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class Source(StrEnum):
    IMPORT = "import"
    CLI = "cli"
    EMAIL = "email"
    WEB = "web"
    SENDGRID = "sendgrid"  # suppressions and event webhook


class Subscriber(Frozen):
    """One reader and the consent record: when, how and from where they joined and left."""

    email: str  # normalized (email-validator, no DNS)
    name: str = ""
    status: Status
    subscribed_at: datetime | None = None
    subscribed_via: Source | None = None
    confirmed_at: datetime | None = None
    confirmed_via: Source | None = None
    left_at: datetime | None = None
    left_via: Source | None = None
    ref: str = ""  # the message id, IP-free request id or file that made the last change
    updated_at: datetime | None = None


class ConsentAction(StrEnum):
    """What changed a reader: one roster operation (:mod:`crusader_mail.storage.rules`)."""

    ADD = "add"
    REQUEST = "request"
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAIN = "complain"
    RESTORE = "restore"
    PREFERENCES = "preferences"  # frequency or topics chosen (the roster row is unchanged)
    PAUSE = "pause"
    RESUME = "resume"


class ConsentEvent(Frozen):
    """One change of a reader's consent record, kept for good (appended, never overwritten)
    until the reader is forgotten: the history behind the record's latest stamps."""

    at: datetime  # UTC, whole seconds: the reader's ``updated_at`` after the change
    email: str  # as the list keeps it
    action: ConsentAction
    status: Status  # the status after the change
    via: Source
    ref: str = ""  # the message id, request id or file that made the change


class Frequency(StrEnum):
    """How often a reader wants the newsletter."""

    EVERY_POST = "every_post"  # an issue for each new post
    WEEKLY = "weekly"  # one digest of the week's posts, at most once every 7 days


class Preferences(Frozen):
    """What a reader chose on the preferences page; the default (every field empty) is what
    a reader who never chose gets: the editor's cadence, every topic, no pause. Kept beside
    the roster row by mailbox key, only when not the default."""

    frequency: Frequency | None = None  # None: the editor's cadence
    topics: tuple[str, ...] = ()  # names from ``newsletter.topics``, sorted; (): everything
    paused_until: datetime | None = None  # UTC; nothing is sent before it; resumes by itself

    def paused(self, now: datetime) -> bool:
        """Is the reader paused at ``now``?"""
        return self.paused_until is not None and now < self.paused_until

    @property
    def is_default(self) -> bool:
        return self.frequency is None and not self.topics and self.paused_until is None


# --- outgoing mail ----------------------------------------------------------------------------


class OutgoingMessage(Frozen):
    """One transactional message (confirmation, welcome, goodbye, help) to one reader."""

    to_email: str
    to_name: str = ""
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    category: str = "transactional"


class SendReport(Frozen):
    issue: str
    dry_run: bool
    recipients: int = 0
    delivered: int = 0
    skipped: dict[str, int] = Field(
        default_factory=lambda: {"unsubscribed": 0, "bounced": 0, "complained": 0, "pending": 0}
    )
    requests: int = 0
    retries: int = 0
    failed: int = 0
    uncertain: int = 0


def issue_id_for(post_ids: Sequence[str], day: date) -> str:
    """A stable id for the issue carrying ``post_ids``: ``2026-11-23-1a2b3c4d``."""
    digest = hashlib.sha256("\n".join(sorted(post_ids)).encode("utf-8")).hexdigest()[:8]
    return f"{day.isoformat()}-{digest}"
