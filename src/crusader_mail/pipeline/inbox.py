"""The inbox step: suppressions, expired requests, pending readers, mail from files and IMAP, then the replies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.delivery.client import ClientFactory
from crusader_mail.delivery.mailer import Mailer
from crusader_mail.delivery.suppressions import sync_suppressions
from crusader_mail.inbox.process import InboxContext, InboxReport, process_messages
from crusader_mail.inbox.sources import ImapSource, read_paths
from crusader_mail.pipeline.reports import InboxRun
from crusader_mail.settings import Settings
from crusader_mail.storage.contract import Store
from crusader_mail.subscriptions.outbox import send_queued
from crusader_mail.subscriptions.pending import confirm_pending
from crusader_mail.subscriptions.service import expire_requests


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
