"""``crusader-mail send [--dry-run] [--to EMAIL] [--resend-uncertain] [--checkpoint CMD] [--json]``.

Sends the issues that are due (``pipeline.send_stage`` finds or composes them, pulls suppressions
and calls :func:`crusader_mail.delivery.engine.deliver` for each, or
:func:`~crusader_mail.delivery.engine.send_test`): one digest, or with ``cadence.mode =
"per_post"`` each new post as its own issue. Progress goes to stderr: a rich bar on a terminal,
else a line every few seconds (:mod:`crusader_mail.cli.progress`); a summary of each issue
follows on stdout, and the notes (readers in doubt, a dry run's notes and problems) on stderr. ``--json`` prints exactly one object, the first issue's report plus every issue's:
``{"issue", "dry_run", "recipients", "delivered", "skipped": {"unsubscribed", "bounced",
"complained", "pending", "already_delivered", "duplicate"}, "requests", "retries", "failed",
"uncertain", "issues": [{the same keys but "issues"}, ...]}`` — also when the send stops midway
(then the error line follows on stderr and the exit code is 1). No address is ever printed in
full.
A real send where nothing would honour an unsubscribe exits 2; a dry run warns on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from crusader_mail import pipeline
from crusader_mail.cli.checkpoint import OPTION_HELP, command_checkpoint
from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console as make_console
from crusader_mail.cli.output import warn
from crusader_mail.cli.progress import fetch_progress, send_progress
from crusader_mail.delivery.client import client_factory
from crusader_mail.delivery.dry_run import SUMMARY, THROWAWAY_NOTE
from crusader_mail.models import SendReport


@click.command()
@click.option("--dry-run", is_flag=True, help="Do everything but send; write outbox/.")
@click.option("--to", "to", metavar="EMAIL", help="Test send to this one address ([TEST] subject).")
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send again to the readers left in doubt by a crash (a batch, or a whole issue).",
)
@click.option("--checkpoint", metavar="COMMAND", help=OPTION_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def send(
    app: AppContext,
    dry_run: bool,
    to: str | None,
    resend_uncertain: bool,
    checkpoint: str | None,
    as_json: bool,
) -> None:
    """Send what is due to every active reader, each issue exactly once.

    Fetches the feeds and plans as `run` does (an interrupted issue first; with cadence
    per_post each new post is an issue of its own), pulls SendGrid's suppressions, then
    delivers each issue through its ledger. --dry-run writes outbox/ (a further issue in
    outbox/issue-N) and changes nothing. --to sends the next issue to one address with a
    [TEST] subject, without ledger or state change; with nothing new it test-sends the
    newest post.
    """
    settings = app.settings
    factory = None if dry_run else client_factory(settings)
    if to is None:
        for warning in pipeline.check_ways_out(settings, dry_run=dry_run):
            warn(warning)
    sent = pipeline.send_stage(
        settings,
        app.clock,
        factory,
        dry_run=dry_run,
        to=to,
        resend_uncertain=resend_uncertain,
        progress=send_progress(app.clock),
        checkpoint=command_checkpoint(checkpoint),
        fetch_progress=fetch_progress(app.clock),
    )
    outbox = settings.outbox_dir if dry_run else None
    if as_json:
        click.echo(json.dumps(_as_json(sent.reports)))
    else:
        _print(sent.reports, outbox, test_to=bool(to))
    _diagnostics(sent.reports, outbox)
    if sent.error is not None:
        raise sent.error


def _as_json(reports: list[SendReport]) -> dict[str, Any]:
    """The first issue's report (``"issue": null`` when nothing was due) and every issue's."""
    every = [report.model_dump(mode="json") for report in reports]
    if not reports:
        return SendReport(issue="", dry_run=False).model_dump(mode="json") | {
            "issue": None,
            "issues": every,
        }
    return every[0] | {"issues": every}


def _print(reports: list[SendReport], outbox: Path | None, *, test_to: bool) -> None:
    console = make_console()
    if not reports:
        console.print("nothing to send: no composed issue is waiting")
        return
    for index, report in enumerate(reports):
        folder = None if outbox is None else pipeline.issue_outbox(outbox, index)
        _print_one(console, report, folder, test_to=test_to)


def _print_one(console: Console, report: SendReport, outbox: Path | None, *, test_to: bool) -> None:
    mode = "dry run" if report.dry_run else ("test send" if test_to else "sent")
    table = Table(title=f"issue {report.issue} ({mode})", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("active readers", report.recipients),
        ("would be delivered" if report.dry_run else "delivered now", report.delivered),
        *((f"skipped: {name.replace('_', ' ')}", count) for name, count in report.skipped.items()),
        ("requests", report.requests),
        ("retries", report.retries),
        ("failed", report.failed),
        ("uncertain", report.uncertain),
    ]
    for name, count in rows:
        table.add_row(name, f"{count:,}")
    console.print(table)
    if outbox is not None:
        _print_outbox(console, outbox)


def _outbox_summary(outbox: Path) -> dict[str, Any] | None:
    path = outbox / SUMMARY
    if not path.is_file():
        return None
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return summary


def _print_outbox(console: Console, outbox: Path) -> None:
    summary = _outbox_summary(outbox)
    if summary is None:
        return
    console.print(f"subject: {summary['subject']}")
    console.print(f"from: {summary['from']}")
    sample = ", ".join(summary["sample_recipients"])
    console.print(f"first recipients: {sample or '(none)'}")
    files = [*summary["request_files"], *([summary["eml"]] if summary["eml"] else []), SUMMARY]
    console.print(f"written to {outbox}: {', '.join(files)}")


def _diagnostics(reports: list[SendReport], outbox: Path | None) -> None:
    """On stderr, with --json too: readers left in doubt, and a dry run's notes and problems."""
    for index, report in enumerate(reports):
        if report.uncertain:
            warn(
                f"issue {report.issue}: {report.uncertain:,} readers were in a batch left in "
                "doubt by an interrupted send: they may or may not have it. `send "
                "--resend-uncertain` sends it to them again."
            )
        summary = None if outbox is None else _outbox_summary(pipeline.issue_outbox(outbox, index))
        if summary is None:
            continue
        for note in summary["notes"]:
            warn(note, "note")
        for problem in summary["problems"]:
            warn(problem, "problem")
        if THROWAWAY_NOTE in summary["notes"]:
            warn("set CRUSADER_MAIL_SECRET_KEY to sign real unsubscribe links", "note")
