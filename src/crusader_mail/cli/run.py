"""``crusader-mail run``: the scheduled job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from crusader_mail.cli.checkpoint import OPTION_HELP, command_checkpoint
from crusader_mail.cli.context import AppContext
from crusader_mail.cli.fetch import feed_diagnostics
from crusader_mail.cli.output import warn
from crusader_mail.cli.progress import fetch_progress, send_progress
from crusader_mail.compose.note import read_note
from crusader_mail.delivery.client import client_factory
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.pipeline import (
    RunReport,
)
from crusader_mail.pipeline import run as run_pipeline
from crusader_mail.pipeline.summary import markdown_summary, text_summary
from crusader_mail.util.masking import mask_message_ids


@click.command()
@click.option("--dry-run", is_flag=True, help="Do everything but send; change no state.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
@click.option(
    "--include-backlog",
    type=click.IntRange(min=0),
    default=0,
    help="Send the N newest backlog posts (published before their feed was first seen).",
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Also send to the readers in doubt after a crash (a batch, or a whole issue).",
)
@click.option("--checkpoint", metavar="COMMAND", help=OPTION_HELP)
@click.option(
    "--summary",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Append a Markdown summary (no addresses) to this file, e.g. $GITHUB_STEP_SUMMARY.",
)
@click.option(
    "--note",
    metavar="TEXT",
    help="The editor's note (Markdown) on top of the next issue, instead of note_file's.",
)
@click.option(
    "--note-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Read the editor's note from this file instead (it is left as it is).",
)
@click.option(
    "--approve",
    "approve",
    metavar="ISSUE_ID",
    multiple=True,
    help="Send this issue held for approval, and nothing else (repeat it, or separate ids "
    "with commas or spaces, for several).",
)
@click.pass_obj
def run(
    app: AppContext,
    dry_run: bool,
    as_json: bool,
    include_backlog: int,
    resend_uncertain: bool,
    checkpoint: str | None,
    summary: Path | None,
    note: str | None,
    note_file: Path | None,
    approve: tuple[str, ...],
) -> None:
    """Sync suppressions, process the inbox, fetch the feeds, and send what is new.

    What a feed published before it was first seen (everything, on the first run) is archived
    as backlog and not sent; --include-backlog N sends the N newest. With cadence per_post
    each new post goes out as its own issue, all in this run. Nothing new means nothing is
    sent (exit 0). Exit 1 on failure (a failed send, a failed
    --checkpoint, an issue whose every reader is in doubt), 2 on a configuration error, e.g.
    when nothing would honour an unsubscribe. A dry run needs no secrets, writes the
    newsletter and the outbox, and only warns.

    The editor's note (note_file, or --note / --note-file) goes on top of the next issue;
    note_file is emptied once that issue is sent. With newsletter.archive_url each issue sent
    is published in archive_dir. With cadence approval = true a new issue is held: its
    preview is written to preview_dir (a made-up reader) and --approve ISSUE_ID sends it
    (exit 2 when ISSUE_ID awaits no approval).
    """
    if note is not None and note_file is not None:
        raise click.UsageError("--note and --note-file cannot be used together")
    if note_file is not None:
        note = read_note(note_file)
    approved = list(
        dict.fromkeys(part for value in approve for part in re.split(r"[\s,]+", value) if part)
    )
    settings = app.settings
    factory = None
    mailer = None
    if not dry_run:
        settings.require_secret_key()
        settings.require_api_key()
        factory = client_factory(settings)
        mailer = make_mailer(settings, app.clock)
    report = run_pipeline(
        settings,
        app.clock,
        factory,
        dry_run=dry_run,
        include_backlog=include_backlog,
        resend_uncertain=resend_uncertain,
        progress=send_progress(app.clock),
        mailer=mailer,
        checkpoint=command_checkpoint(checkpoint),
        note=note,
        approve=approved,
        fetch_progress=fetch_progress(app.clock),
    )
    for problem in report.problems:
        warn(problem)
    feed_diagnostics(report.feeds, errors=False)  # their errors are among the problems
    for done in report.issues:
        for note in done.issue.notes:
            warn(f"issue {done.issue.issue_id}: {note}", "note")
        if done.send is not None and done.send.uncertain:
            warn(
                f"issue {done.issue.issue_id}: {done.send.uncertain} "
                "readers are in doubt (a run died between SendGrid's answer and the ledger); "
                "check SendGrid's activity feed and run 'crusader-mail send --resend-uncertain' "
                "if they did not get the issue"
            )
    if summary is not None:
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(markdown_summary(report))
    if as_json:
        click.echo(json.dumps(shown_json(report), indent=2, default=str))
    else:
        click.echo(text_summary(report))
    if report.error is not None:
        click.echo(f"crusader-mail: error: {report.error}", err=True)
    if report.failed:
        raise click.exceptions.Exit(1)


def shown_json(report: RunReport) -> dict[str, object]:
    """The report as ``--json`` prints it: the inbox's Message-IDs masked."""
    data = report.to_json()
    if isinstance(report.inbox, dict):
        data["inbox"] = mask_message_ids(report.inbox)
    return data
