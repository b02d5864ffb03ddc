"""What ``crusader-mail subscribers import`` did, told to people (:meth:`ImportDone.lines`, one
line a fact, addresses masked as :mod:`.imports` names them) and as JSON
(:meth:`ImportDone.as_json`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crusader_mail.models import Status
from crusader_mail.storage.contract import AddReport
from crusader_mail.subscriptions.imports import ImportFile, LeftReport


@dataclass(frozen=True)
class ImportDone:
    """The file read (``parsed``), what adding its readers did (``added``) and what recording
    those it marks as left did (``left``)."""

    file: str
    status: Status
    parsed: ImportFile
    added: AddReport
    left: LeftReport

    def as_json(self) -> dict[str, object]:
        parsed, added = self.parsed, self.added
        return {
            "file": self.file,
            "columns": parsed.columns.as_json() if parsed.columns else None,
            "status": self.status.value,
            "added": added.added,
            "left": self.left.as_json(),
            "skipped": parsed.skipped,
            "bad": parsed.bad,
            "duplicates": parsed.duplicates,
            "case_merged": parsed.case_merged,
            "unchanged": added.unchanged,
            "kept_away": added.kept_away,
            "names_filled": added.names_filled,
        }

    def lines(self) -> list[str]:
        parsed, added = self.parsed, self.added
        lines = [f"skipped {problem}" for problem in parsed.bad]
        lines.append(f"added {added.added} {_readers(added.added)} ({self.status.value})")
        lines += _left_lines(self.left)
        if parsed.skipped:
            count = sum(parsed.skipped.values())
            why = ", ".join(f"{reason} ({n})" for reason, n in sorted(parsed.skipped.items()))
            rows = "row" if count == 1 else "rows"
            lines.append(f"skipped {count} {rows}, neither subscribed nor left: {why}")
        if parsed.duplicates:
            lines.append(f"merged {parsed.duplicates} repeated row(s) of the same address")
        if parsed.case_merged:
            rows = "row that differs" if parsed.case_merged == 1 else "rows that differ"
            lines.append(f"merged {parsed.case_merged} {rows} only in case")
        if added.unchanged:
            lines.append(f"already on the list, status unchanged: {_counted(added.unchanged)}")
        if added.kept_away:
            lines.append(
                f"{added.kept_away} of them had left (unsubscribed, bounced or complained) and "
                "were not re-activated"
            )
        if added.names_filled:
            lines.append(f"filled in {added.names_filled} missing name(s)")
        if parsed.bad:
            lines.append(f"skipped {len(parsed.bad)} bad row(s)")
        return lines


def _left_lines(left: LeftReport) -> list[str]:
    """What :func:`~.imports.record_left` did, a line for each kind of change."""
    lines = []
    if left.recorded:
        total = sum(left.recorded.values())
        lines.append(
            f"recorded {total} {_readers(total)} who left ({_counted(left.recorded)}), without "
            "their names: never sent an issue, never brought back by an import"
        )
    if left.now_left:
        total = sum(left.now_left.values())
        verb = "reader on the list is" if total == 1 else "readers on the list are"
        lines.append(f"{total} {verb} marked as left in the file: now {_counted(left.now_left)}")
    if left.already_left:
        lines.append(f"{left.already_left} marked as left had already left here: unchanged")
    return lines


def _readers(count: int) -> str:
    return "reader" if count == 1 else "readers"


def _counted(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
