"""Benchmark the subscriber list: streaming ``iter`` over a big generated list, ``edit``, and
the streaming bulk update the suppression sync uses.

    .venv/bin/python bench/bench_subscribers.py [--rows 1000000] [--suppressions 1000]
        [--keep DIR] [--skip-edit] [--skip-bulk]

Writes a synthetic list (readers ``reader0000000@example.com``…, 90 % active) to a temporary
folder, then measures, each with time.perf_counter and separately under tracemalloc:
``iter(Status.ACTIVE)`` (what the sender does), ``counts()``, one ``edit()`` that changes
one reader, and ``apply_suppressions`` (``SubscriberList.update_many``) with ``--suppressions``
addresses spread over four SendGrid lists (plus 10 % strangers), starting each run from the
same file. Then each way of applying those suppressions runs once more in a fresh child process
and reports its peak RSS: the streaming update, the former one-``edit()`` sync (skipped with
``--skip-edit``), and a child that only imports (the interpreter's floor). The children run
first, while this process is still small: on Linux a child's ``ru_maxrss`` starts at its
parent's peak (the kernel carries it across fork and exec), so each child also reports
``VmHWM`` from ``/proc/self/status``, the peak of its own memory only. The target from issue 4:
the send path (which syncs suppressions first) stays within 150 MB at 1,000,000 readers.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from crusader_mail.clock import FixedClock
from crusader_mail.delivery.suppressions import SuppressionList, apply_suppressions
from crusader_mail.models import Source, Status
from crusader_mail.storage.files.list_format import HEADER, MARKER
from crusader_mail.storage.files.subscribers import LIST_FILE, SubscriberList

LISTS = [
    SuppressionList("unsubscribes", ("suppression", "unsubscribes"), Status.UNSUBSCRIBED),
    SuppressionList("bounces", ("suppression", "bounces"), Status.BOUNCED),
    SuppressionList("spam_reports", ("suppression", "spam_reports"), Status.COMPLAINED),
    SuppressionList("invalid_emails", ("suppression", "invalid_emails"), Status.BOUNCED),
]
CLOCK = FixedClock(datetime(2026, 11, 24, tzinfo=UTC))

STAMP = "2026-11-23T09:00:00Z"


def generate(folder: Path, rows: int) -> Path:
    path = folder / LIST_FILE
    with path.open("w", encoding="utf-8") as out:
        out.write(f"{MARKER}\n{HEADER}\n")
        for i in range(rows):
            if i % 10 == 9:
                tail = f"unsubscribed,{STAMP},import,{STAMP},import,{STAMP},email,<m{i}@x>,{STAMP}"
            else:
                tail = f"active,{STAMP},import,{STAMP},import,,,bench.csv,{STAMP}"
            out.write(f"reader{i:07d}@example.com,Reader {i},{tail}\n")
    return path


def measure(label: str, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    action()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{label:<28} {seconds:7.2f} s   tracemalloc peak {peak / 2**10:9.1f} KiB   result {result}"
    )


def suppressed(rows: int, count: int) -> list[list[str]]:
    """``count`` readers spread evenly over the list (one in ten already unsubscribed, every
    9th upper-cased as SendGrid may send them), dealt round-robin onto the four lists, plus
    ``count // 10`` strangers."""
    fetched: list[list[str]] = [[] for _ in LISTS]
    step = max(1, rows // max(1, count))
    for n, i in enumerate(range(0, rows, step)[:count]):
        email = f"reader{i + min(step - 1, n % 10):07d}@example.com"  # some already left
        fetched[n % len(LISTS)].append(email.upper() if n % 9 == 0 else email)
    fetched[1] += [f"stranger{i}@elsewhere.example" for i in range(count // 10)]
    return fetched


def legacy_edit_apply(
    readers: SubscriberList, lists: list[SuppressionList], fetched: list[list[str]]
) -> int:
    """The sync before ``update_many``: one ``edit()`` holding the whole list (for comparison)."""
    wanted: dict[str, list[SuppressionList]] = {}
    for what, found in zip(lists, fetched, strict=True):
        for email in found:
            wanted.setdefault(email.strip().lower(), []).append(what)
    changed = 0
    with readers.edit() as roster:
        emails = [e for e in (line[: line.index(",")] for line in roster.lines()) if e in wanted]
        for email in emails:
            for what in wanted[email.lower()]:
                before = roster.get(email)
                if what.status is Status.UNSUBSCRIBED:
                    after = roster.unsubscribe(email, via=Source.SENDGRID, ref=what.name)
                else:
                    after = roster.mark(email, what.status, via=Source.SENDGRID, ref=what.name)
                changed += after is not None and before is not None and after != before
    return changed


def child(mode: str, folder: Path, rows: int, count: int) -> None:
    """Run one way of applying the suppressions in this fresh process; print a JSON line."""
    readers = SubscriberList(folder, CLOCK)
    fetched = suppressed(rows, count)
    started = time.perf_counter()
    result: object = None
    if mode == "bulk":
        result = apply_suppressions(readers, LISTS, fetched)
    elif mode == "edit":
        result = legacy_edit_apply(readers, LISTS, fetched)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm = own_peak_kib()
    print(json.dumps({"seconds": seconds, "maxrss_kib": rss, "hwm_kib": hwm, "result": result}))


def own_peak_kib() -> int | None:
    """This process's own peak RSS (VmHWM), where /proc exists."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_child(mode: str, folder: Path, rows: int, count: int) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", mode, "--rows", str(rows)]
    command += ["--suppressions", str(count), "--keep", str(folder)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    answer: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return answer


def bench_children(folder: Path, path: Path, rows: int, count: int, skip_edit: bool) -> None:
    """Each way of applying the suppressions once, in a fresh child, from the same file."""
    pristine = folder.parent / f"{folder.name}-pristine.csv"
    shutil.copyfile(path, pristine)
    names = {"none": "import only", "bulk": "update_many", "edit": "edit() (former sync)"}
    for mode in ["none", "bulk"] + ([] if skip_edit else ["edit"]):
        shutil.copyfile(pristine, path)
        out = run_child(mode, folder, rows, count)
        hwm = out["hwm_kib"]
        own = f"{float(str(hwm)) / 1024:7.1f} MiB" if hwm is not None else "    n/a"
        print(
            f"child {names[mode]:<21} {float(str(out['seconds'])):6.2f} s   "
            f"ru_maxrss {float(str(out['maxrss_kib'])) / 1024:7.1f} MiB   VmHWM {own}"
            f"   result {out['result']}"
        )
    shutil.copyfile(pristine, path)
    pristine.unlink()


def bench_bulk(folder: Path, path: Path, rows: int, count: int) -> None:
    """``apply_suppressions`` in this process: timed, then again under tracemalloc, each run
    starting from the same file."""
    pristine = folder.parent / f"{folder.name}-pristine.csv"
    shutil.copyfile(path, pristine)
    readers = SubscriberList(folder, CLOCK)
    fetched = suppressed(rows, count)
    started = time.perf_counter()
    result = apply_suppressions(readers, LISTS, fetched)
    seconds = time.perf_counter() - started
    shutil.copyfile(pristine, path)
    tracemalloc.start()
    again = apply_suppressions(readers, LISTS, fetched)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pristine.unlink()
    assert again == result, (again, result)
    label = f"update_many, {count} suppr."
    print(
        f"{label:<28} {seconds:7.2f} s   tracemalloc peak {peak / 2**10:9.1f} KiB   result {result}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--suppressions", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--skip-edit", action="store_true", help="measure no in-memory edit()")
    parser.add_argument("--skip-bulk", action="store_true", help="measure no bulk update")
    parser.add_argument("--child", choices=("none", "bulk", "edit"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.keep, args.rows, args.suppressions)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = generate(folder, args.rows)
        print(f"{args.rows} rows, {path.stat().st_size / 2**20:.1f} MiB file")
        if not args.skip_bulk:
            bench_children(folder, path, args.rows, args.suppressions, args.skip_edit)
        readers = SubscriberList(folder, FixedClock(datetime(2026, 11, 24, tzinfo=UTC)))

        def iterate() -> int:
            return sum(1 for _ in readers.iter(Status.ACTIVE))

        started = time.perf_counter()
        active = iterate()
        seconds = time.perf_counter() - started
        print(f"iter(active): {args.rows / seconds:,.0f} rows/s")
        measure("iter(Status.ACTIVE)", lambda: active if iterate() == active else "mismatch")
        measure("counts()", lambda: readers.counts()[Status.ACTIVE])

        flip = [True]

        def edit_one() -> str:
            with readers.edit() as roster:
                email = "reader0000003@example.com"
                if flip[0]:
                    roster.unsubscribe(email, via=Source.CLI)
                else:
                    roster.request(email, via=Source.CLI)
                flip[0] = not flip[0]
                return roster.get(email).status.value  # type: ignore[union-attr]

        if not args.skip_edit:
            measure("edit() one change + save", edit_one)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"process max RSS {rss / 1024:.1f} MiB (includes generating the file)")
        if not args.skip_bulk:
            bench_bulk(folder, path, args.rows, args.suppressions)


if __name__ == "__main__":
    main()
