"""``crusader-mail run``: the scheduled job."""

from __future__ import annotations

import html
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
    FEED_FAILURES_LIMIT,
    IssueRun,
    RunReport,
    broken_feed_line,
    broken_feeds,
    count_of,
)
from crusader_mail.pipeline import run as run_pipeline
from crusader_mail.util.masking import mask_message_ids, mask_url


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


def text_summary(report: RunReport) -> str:
    lines = []
    ok = sum(1 for feed in report.feeds if feed.status != "error")
    broken = broken_feeds(report.feeds)
    lines.append(
        f"feeds: {ok} of {len(report.feeds)} read"
        + (f"; {len(broken)} failed on {FEED_FAILURES_LIMIT}+ runs in a row" if broken else "")
    )
    if report.backlog is not None:
        lines.extend(report.backlog.notes())
    if report.inbox is not None:
        lines.append(f"inbox: {report.inbox.get('processed', 0)} messages processed")
    if report.suppressions is not None:
        lines.append(f"suppressions: {sum(report.suppressions.values())} synced from SendGrid")
    if not report.issues:
        if report.error is None:
            lines.append("nothing new: no issue sent")
        lines.extend(report.notes)
        return "\n".join(lines)
    if len(report.issues) > 1:
        lines.append(f"{len(report.issues)} issues, one after the other:")
    for done in report.issues:
        lines.extend(_issue_lines(done, last=done is report.issues[-1]))
    lines.extend(report.notes)
    if report.dry_run:
        lines.append("dry run: nothing was sent and no state was changed")
    return "\n".join(lines)


def _issue_lines(done: IssueRun, *, last: bool) -> list[str]:
    issue = done.issue
    verb = "held for approval" if done.held else "resumed" if issue.resumed else "composed"
    lines = [f"issue {issue.issue_id} {verb}: {issue.subject!r}"]
    waiting = last and issue.waiting  # the posts no issue of this run carries
    lines.append(
        f"  {len(issue.posts)} posts, {len(issue.related)} related, {issue.html_bytes:,} bytes"
        + (f", {issue.waiting} posts wait for the next issue" if waiting else "")
    )
    if issue.group != "the list":
        lines.append(f"  for {issue.group} (an issue made for them)")
    if issue.note:
        lines.append("  with the editor's note on top")
    if done.held:
        lines.append(f"  not sent: {APPROVE_HINT.format(issue=issue.issue_id)}")
    if done.send is not None:
        send = done.send
        action = "would go to" if send.dry_run else "delivered to"
        readers = send.delivered if not send.dry_run else send.recipients
        lines.append(
            f"  {action} {count_of(readers, 'reader')} in {count_of(send.requests, 'request')}"
            + (f", {send.uncertain} in doubt" if send.uncertain else "")
            + (f", {send.failed} failed" if send.failed else "")
        )
    if done.newsletter:
        lines.append(f"newsletter: {done.newsletter} (open it in a browser)")
    if done.outbox:
        lines.append(f"outbox: {done.outbox} (SendGrid request bodies and one complete .eml)")
    if done.preview:
        lines.append(f"preview: {done.preview}/newsletter.html (a made-up sample reader)")
    if done.page:
        lines.append(f"  archive page: {done.page}")
    return lines


APPROVE_HINT = (
    "`crusader-mail run --approve {issue}` sends it (on GitHub: Run workflow with "
    "approve = {issue})"
)


_MARKDOWN = re.compile(r"[\\`*_\[\]!|~]")


def _cell(text: object) -> str:
    """Text shown as itself in one Markdown table cell or line (feed titles, errors): one line,
    no HTML (``&``, ``<``, ``>`` as entities), and every character that would make a link, an
    image, emphasis, code or a new cell escaped with a backslash."""
    flat = " ".join(str(text).split())
    return html.escape(_MARKDOWN.sub(lambda found: "\\" + found[0], flat), quote=False)


def markdown_summary(report: RunReport) -> str:
    """The job summary an editor reads on GitHub: what went out, never who it went to. What
    feeds control (titles, errors) shows as plain text, feed URLs masked (``mask_url``)."""
    title = "Newsletter dry run" if report.dry_run else "Newsletter run"
    out = [f"## {title}", ""]
    out.append("| feed | status | entries | new |")
    out.append("| --- | --- | ---: | ---: |")
    for feed in report.feeds:
        status = feed.status if not feed.error else f"{feed.status}: {feed.error}"
        if feed.failures > 1:
            status = f"{feed.status} ({feed.failures} runs in a row): {feed.error}"
        url = _cell(mask_url(feed.url))
        out.append(f"| {url} | {_cell(status)} | {feed.entries} | {feed.new} |")
    out.append("")
    broken = broken_feeds(report.feeds)
    if broken:
        out.append(f"**A feed failed on {FEED_FAILURES_LIMIT} runs in a row: this run fails.**")
        out.extend(f"- {_cell(broken_feed_line(feed))}" for feed in broken)
        out.append("")
    notes = report.backlog.notes(_cell) if report.backlog is not None else []
    if notes:
        out.extend([*(f"- {note}" for note in notes), ""])
    if not report.issues and report.error is None:
        out.append("Nothing new: no issue was sent.")
    if len(report.issues) > 1:
        out.extend([f"{len(report.issues)} issues, one after the other:", ""])
    for number, done in enumerate(report.issues):
        out.extend(([""] if number else []) + _issue_markdown(done))
    if report.notes:
        out.extend(["", *(f"- {_cell(note)}" for note in report.notes)])
    if report.error:
        out.extend(["", f"**The send failed or did not start:** {_cell(report.error)}"])
    if report.problems:
        out.append("")
        out.append("Problems:")
        out.extend(f"- {_cell(problem)}" for problem in report.problems)
    out.append("")
    return "\n".join(out)


def _issue_markdown(done: IssueRun) -> list[str]:
    issue = done.issue
    state = " (held for approval)" if done.held else " (resumed)" if issue.resumed else ""
    out = [f"**{_cell(issue.subject)}** (`{issue.issue_id}`){state}"]
    out.append("")
    out.append(f"- posts: {len(issue.posts)}, related posts: {len(issue.related)}")
    out.append(f"- for: {issue.group}")
    if done.send is not None:
        send = done.send
        out.append(f"- readers: {send.recipients}, delivered: {send.delivered}")
        skipped = ", ".join(f"{k} {v}" for k, v in send.skipped.items() if v)
        if skipped:
            out.append(f"- not sent to: {skipped}")
        if send.uncertain or send.failed:
            out.append(f"- in doubt: {send.uncertain}, failed: {send.failed}")
    out.extend(f"- note: {_cell(note)}" for note in issue.notes)
    if issue.note:
        out.append("- with the editor's note on top")
    if done.page:
        out.append(f"- archive page: {_cell(done.page)}")
    if done.held:
        out.extend(_held_markdown(done))
    return out


def _held_markdown(done: IssueRun) -> list[str]:
    """How to send a held issue, and its text part (filled in for a made-up reader) shown as
    itself in a fenced block longer than any run of backticks in it."""
    issue_id = done.issue.issue_id
    out = [
        f"- **not sent: awaiting approval.** To send it: Actions > newsletter > Run workflow "
        f"with approve = `{issue_id}` (or `crusader-mail run --approve {issue_id}`); the "
        "preview is this run's artifact",
    ]
    if done.preview_text:
        runs = [len(run) for run in re.findall(r"`+", done.preview_text)]
        fence = "`" * max(3, max(runs, default=0) + 1)
        out.extend(
            [
                "",
                "<details><summary>The issue as a sample reader gets it (text part)</summary>",
                "",
                fence + "text",
                done.preview_text.rstrip("\n"),
                fence,
                "",
                "</details>",
            ]
        )
    return out
