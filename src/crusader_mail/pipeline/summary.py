"""A run's report for people: the lines ``run`` prints (:func:`text_summary`) and the job summary
an editor reads on GitHub (:func:`markdown_summary`, ``summary.md``), with what feeds control
shown as plain text and never an address."""

from __future__ import annotations

import html
import re

from crusader_mail.pipeline.fetching import (
    FEED_FAILURES_LIMIT,
    broken_feed_line,
    broken_feeds,
    count_of,
)
from crusader_mail.pipeline.reports import IssueRun, RunReport
from crusader_mail.util.masking import mask_url


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
