"""Benchmark the subscriber list at 1,000,000 readers: the commands as whole processes
(issue 15's targets), streaming ``iter``, ``edit``, and the streaming bulk update the
suppression sync uses.

    .venv/bin/python bench/bench_subscribers.py [--rows 1000000] [--suppressions 1000]
        [--runs 3] [--import-rows N] [--keep DIR] [--skip-commands] [--skip-import]
        [--skip-edit] [--skip-bulk]

Writes a synthetic list (readers ``reader0000000@example.com``…: 90 % active, one in ten
unsubscribed, a few pending and bounced, distinct times, some quoted names) to a temporary
folder with a settings file, then:

1. The commands, each a whole ``crusader-mail`` process started by a small launcher (so its
   peak RSS, ``ru_maxrss`` from ``wait4``, is its own and not this process's): ``subscribers
   stats``, ``subscribers add``, ``subscribers remove`` and ``inbox process`` of one
   unsubscribe (a real .eml whose To: carries the reader's signed token; the goodbye goes to a
   loopback SendGrid in this process). "first": each command as the first after the list
   changed under the index (the list file touched, as a git checkout or a hand edit does:
   every row is checked again, and for a token the hint table is built); "then": the median
   of ``--runs`` of each once a command changed the list (its index describes it). Then
   ``subscribers import`` of ``--import-rows`` rows (half on the list already, some in
   another case, 2 % marked unsubscribed, in random order) into a fresh copy of the list
   (first after a checkout), median of ``--runs``. Targets (issue 15, at 1,000,000
   readers): "then" stats/add/remove < 1 s and < 150 MiB, inbox process < 1 s; import < 300
   MiB and < 30 s for 1,000,000 rows into 1,000,000 readers, for other sizes 1 s (a command's
   own budget, as stats') + 29 s × (import rows + list rows) / 2,000,000; the "first" runs
   have none (once per checkout, they rebuild the index). "first after a checkout, index
   restored": stats, add and inbox process once each on a copy of the list (a new file, the
   same bytes) with the index kept, as the workflows leave it; the targets of "then".
2. In this process, with time.perf_counter and separately under tracemalloc:
   ``iter(Status.ACTIVE)`` (what the sender does), ``counts()``, one ``edit()`` that changes
   one reader, and ``apply_suppressions`` (``SubscriberList.update_many``) with
   ``--suppressions`` addresses spread over four SendGrid lists (plus 10 % strangers),
   starting each run from the same file; each way of applying those suppressions once more in
   a fresh child process with its peak RSS: the streaming update, the former one-``edit()``
   sync (skipped with ``--skip-edit``), and a child that only imports (the interpreter's
   floor). The children run first, while this process is still small: on Linux a child's
   ``ru_maxrss`` starts at its parent's peak (the kernel carries it across fork and exec), so
   each child also reports ``VmHWM`` from ``/proc/self/status``, the peak of its own memory
   only. No targets here.

Ends with the figures, each beside its target where it has one (``bench/report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peers.sendgrid_server import API_KEY, SendGridServer  # noqa: E402

from bench.inputs import SECRET  # noqa: E402
from bench.report import Figure, against_or_measured, measured, print_figures  # noqa: E402
from crusader_mail.clock import FixedClock  # noqa: E402
from crusader_mail.delivery.suppressions import SuppressionList, apply_suppressions  # noqa: E402
from crusader_mail.models import Source, Status  # noqa: E402
from crusader_mail.storage.files.list_format import HEADER, MARKER  # noqa: E402
from crusader_mail.storage.files.subscribers import LIST_FILE, SubscriberList  # noqa: E402
from crusader_mail.util.tokens import Purpose, Signer  # noqa: E402

LISTS = [
    SuppressionList("unsubscribes", ("suppression", "unsubscribes"), Status.UNSUBSCRIBED),
    SuppressionList("bounces", ("suppression", "bounces"), Status.BOUNCED),
    SuppressionList("spam_reports", ("suppression", "spam_reports"), Status.COMPLAINED),
    SuppressionList("invalid_emails", ("suppression", "invalid_emails"), Status.BOUNCED),
]
CLOCK = FixedClock(datetime(2026, 11, 24, tzinfo=UTC))

STAMP = "2026-11-23T09:00:00Z"
TIME = "%Y-%m-%dT%H:%M:%SZ"


def generate(folder: Path, rows: int) -> Path:
    """The list file of ``rows`` readers in ``folder`` (see the module docstring)."""
    path = folder / LIST_FILE
    folder.mkdir(parents=True, exist_ok=True)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    asked = (datetime.now(UTC) - timedelta(days=1)).strftime(TIME)  # pending: not expired yet
    with path.open("w", encoding="utf-8") as out:
        out.write(f"{MARKER}\n{HEADER}\n")
        for i in range(rows):
            joined = (base + timedelta(seconds=60 * i)).strftime(TIME)
            name = f'"Reader, {i}"' if i % 100 == 42 else f"Reader {i}"
            if i % 10 == 9:
                left = (base + timedelta(seconds=90 * i)).strftime(TIME)
                tail = f"unsubscribed,{joined},import,{joined},import,{left},email,<m{i}@x>,{left}"
            elif i % 1000 == 3:
                tail = f"pending,{asked},web,,,,,form,{asked}"
            elif i % 500 == 7:
                tail = f"bounced,{joined},import,{joined},import,{STAMP},sendgrid,bounces,{STAMP}"
            else:
                tail = f"active,{joined},import,{joined},import,,,bench.csv,{joined}"
            out.write(f"reader{i:07d}@example.com,{name},{tail}\n")
    return path


def measure(label: str, action: Callable[[], object]) -> list[Figure]:
    """``action`` timed, then run again under tracemalloc: its two figures (no targets)."""
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    action()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return traced(label, seconds, peak, result)


def traced(
    label: str, seconds: float, peak: int, result: object, note: str = "no target"
) -> list[Figure]:
    """A measurement in this process, printed as it comes: its time and its traced peak."""
    print(
        f"{label:<28} {seconds:7.2f} s   tracemalloc peak {peak / 2**10:9.1f} KiB   result {result}",
        flush=True,
    )
    return [
        measured(f"{label}, time", seconds, "s", digits=3),
        measured(f"{label}, tracemalloc peak", peak / 2**10, "KiB", digits=1, note=note),
    ]


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


def bench_children(
    folder: Path, path: Path, rows: int, count: int, skip_edit: bool
) -> list[Figure]:
    """Each way of applying the suppressions once, in a fresh child, from the same file."""
    pristine = folder.parent / f"{folder.name}-pristine.csv"
    shutil.copyfile(path, pristine)
    names = {"none": "import only", "bulk": "update_many", "edit": "edit() (former sync)"}
    figures = []
    for mode in ["none", "bulk"] + ([] if skip_edit else ["edit"]):
        shutil.copyfile(pristine, path)
        out = run_child(mode, folder, rows, count)
        seconds = float(str(out["seconds"]))
        maxrss = float(str(out["maxrss_kib"])) / 1024
        hwm = None if out["hwm_kib"] is None else float(str(out["hwm_kib"])) / 1024
        own = "    n/a" if hwm is None else f"{hwm:7.1f} MiB"
        print(
            f"child {names[mode]:<21} {seconds:6.2f} s   "
            f"ru_maxrss {maxrss:7.1f} MiB   VmHWM {own}   result {out['result']}",
            flush=True,
        )
        name = f"child, {names[mode]}"
        figures.append(measured(f"{name}, time", seconds, "s", digits=3))
        figures.append(
            measured(
                f"{name}, ru_maxrss", maxrss, "MiB", digits=1, note="no target: starts at our peak"
            )
        )
        if hwm is not None:
            figures.append(measured(f"{name}, VmHWM (its own)", hwm, "MiB", digits=1))
    shutil.copyfile(pristine, path)
    pristine.unlink()
    return figures


def bench_bulk(folder: Path, path: Path, rows: int, count: int) -> list[Figure]:
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
    note = "no target: ∝ the changes, not the list"
    return traced(f"update_many, {count} suppr.", seconds, peak, result, note)


# --- the commands, as whole processes ---------------------------------------------------------

TARGETS = {  # issue 15, at 1,000,000 readers: seconds, MiB (None: no target)
    "stats": (1.0, 150.0),
    "add": (1.0, 150.0),
    "remove": (1.0, 150.0),
    "inbox process": (1.0, None),
    "import": (30.0, 300.0),  # 1,000,000 rows into 1,000,000 readers
}
START = 1.0  # seconds of a time target that do not scale with the rows: a command's own budget
FIRST = "no target: once per checkout, rebuilds the index"

LAUNCHER = """
import json, os, subprocess, sys, time
with open(sys.argv[1], "wb") as errors:
    started = time.perf_counter()
    child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=errors)
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_kib": usage.ru_maxrss,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


@dataclass
class Site:
    """A folder with settings and a list, the loopback SendGrid, and the commands' environment."""

    root: Path
    env: dict[str, str]
    exe: str

    @property
    def list_path(self) -> Path:
        return self.root / "subscribers" / LIST_FILE

    def run(self, *args: str) -> tuple[float, float]:
        """Run ``crusader-mail ARGS`` in a fresh process: (seconds, peak MiB)."""
        errors = self.root / "stderr.txt"
        launcher = [sys.executable, "-c", LAUNCHER, str(errors), self.exe, *args]
        done = subprocess.run(
            launcher, cwd=self.root, env=self.env, capture_output=True, text=True, check=True
        )
        out = json.loads(done.stdout)
        if out["code"] != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {out['code']}: {errors.read_text()}")
        return float(out["seconds"]), float(out["peak_kib"]) / 1024

    def unsubscribe_mail(self, email: str, number: int) -> Path:
        """A reader's reply to the unsubscribe address of their issue (their token in To:)."""
        token = Signer(SECRET).make(Purpose.UNSUBSCRIBE, email, datetime.now(UTC))
        path = self.root / f"unsubscribe-{number}.eml"
        path.write_text(
            f"From: Reader <{email}>\nTo: news+unsubscribe-{token}@bizcrusader.example\n"
            f"Subject: unsubscribe\nDate: Mon, 23 Nov 2026 08:02:00 +0000\n"
            f"Message-ID: <bench-unsubscribe-{number}@example.com>\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n\nunsubscribe\n",
            encoding="utf-8",
        )
        return path

    def changed_under_the_index(self) -> None:
        """The list as a git checkout leaves it: the same rows, a file nobody here wrote."""
        os.utime(self.list_path)

    def checked_out_with_the_index(self) -> None:
        """The list as a fresh checkout with the index restored from a cache leaves it: the
        same bytes in a new file, the index of the old one kept beside it."""
        copy = self.list_path.with_name("checkout.tmp")
        shutil.copyfile(self.list_path, copy)
        os.replace(copy, self.list_path)


def make_site(root: Path, rows: int, sendgrid_url: str) -> Site:
    generate(root / "subscribers", rows)
    (root / "crusader-mail.toml").write_text(
        f'templates_dir = "{REPO / "templates"}"\nstate_dir = "state"\n'
        'subscribers_dir = "subscribers"\n'
        '[newsletter]\nname = "Biz Crusader"\nsite_url = "https://bizcrusader.example"\n'
        'from_email = "news@bizcrusader.example"\nreplies_per_hour = 100000\n'
        f'[sendgrid]\napi_url = "{sendgrid_url}"\n',
        encoding="utf-8",
    )
    env = {"PATH": "/usr/bin:/bin", "CRUSADER_MAIL_SECRET_KEY": SECRET}
    env["SENDGRID_API_KEY"] = API_KEY
    exe = str(Path(sys.executable).with_name("crusader-mail"))
    return Site(root, env, exe)


def write_import(path: Path, rows: int, readers: int) -> None:
    """An export of ``rows`` readers: every other one on the list already (one in a thousand
    upper-cased), the others new, 2 % marked unsubscribed, in random order."""
    numbers = list(range(rows))
    random.Random(15).shuffle(numbers)
    with path.open("w", encoding="utf-8") as out:
        out.write("Email Address,First Name,Last Name,status\n")
        for n, i in enumerate(numbers):
            email = (
                f"reader{i % readers:07d}@example.com" if i % 2 == 0 else f"new{i:07d}@example.org"
            )
            if n % 1000 == 0:
                email = email.upper()
            status = "unsubscribed" if n % 50 == 0 else "subscribed"
            out.write(f"{email},Imported,Reader {n},{status}\n")


def bench_commands(
    root: Path, rows: int, runs: int, import_rows: int, skip_import: bool
) -> list[Figure]:
    """Each command as a whole process, first after the list changed and then (see the module
    docstring): its figures, each printed as it comes."""
    figures: list[Figure] = []

    def record(
        key: str, name: str, took: tuple[float, float], *, first: bool = False, scale: float = 1.0
    ) -> None:
        """The wall time and peak RSS of ``name``, ``took``; their targets ``TARGETS[key]``
        (the time's beyond ``START`` × ``scale``), none for the first run after a checkout."""
        seconds, peak = took
        print(f"  {name:<38} {seconds:7.2f} s  {peak:7.1f} MiB", flush=True)
        limit_s, limit_mib = (None, None) if first else TARGETS[key]
        note = FIRST if first else "no target"
        wall = None if limit_s is None else START + (limit_s - START) * scale
        figures.append(
            against_or_measured(f"{name}, wall", seconds, "<", wall, "s", digits=3, note=note)
        )
        figures.append(
            against_or_measured(
                f"{name}, peak RSS", peak, "<", limit_mib, "MiB", digits=1, note=note
            )
        )

    print(f"commands at {rows:,} readers (whole processes; 'then': median of {runs})", flush=True)
    with SendGridServer(record=False) as sendgrid:
        site = make_site(root, rows, sendgrid.url)
        pristine = root / "pristine.csv"
        shutil.copyfile(site.list_path, pristine)
        numbers = iter(range(1, 10_000))

        def reader() -> str:
            return f"reader{(next(numbers) * 7919) % rows:07d}@example.com"

        def inbox() -> tuple[str, ...]:
            number = next(numbers)
            return ("inbox", "process", str(site.unsubscribe_mail(reader(), number)))

        commands: dict[str, Callable[[], tuple[str, ...]]] = {
            "stats": lambda: ("subscribers", "stats"),
            "add": lambda: ("subscribers", "add", f"bench{next(numbers)}@example.net"),
            "remove": lambda: ("subscribers", "remove", reader()),
            "inbox process": inbox,
        }
        for name, command in commands.items():  # each the first after a checkout
            site.changed_under_the_index()
            record(name, f"{name}, first after a checkout", site.run(*command()), first=True)
        site.run(*commands["add"]())  # a change: the index describes the list from here on
        for name, command in commands.items():
            then = [site.run(*command()) for _ in range(runs)]
            median = statistics.median(t for t, _ in then), max(p for _, p in then)
            record(name, f"{name}, then", median)
        for name in ("stats", "add", "inbox process"):
            site.checked_out_with_the_index()
            took = site.run(*commands[name]())
            record(name, f"{name}, first after a checkout, index restored", took)
        if not skip_import:
            source = root / "import.csv"
            write_import(source, import_rows, rows)
            done = []
            for _ in range(runs):
                shutil.copyfile(pristine, site.list_path)
                for extra in (root / "subscribers").glob("consent-log.csv*"):
                    extra.unlink()
                done.append(site.run("subscribers", "import", str(source)))
            median = statistics.median(t for t, _ in done), max(p for _, p in done)
            scale = (import_rows + rows) / 2_000_000  # the rows read: the import's and the list's
            record("import", f"import {import_rows:,} rows", median, scale=scale)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --rows 50000 --runs 1",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--suppressions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (median)")
    parser.add_argument("--import-rows", type=int, help="rows of the import (default: --rows)")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--skip-commands", action="store_true", help="no whole-process runs")
    parser.add_argument("--skip-import", action="store_true", help="no import run")
    parser.add_argument("--skip-edit", action="store_true", help="measure no in-memory edit()")
    parser.add_argument("--skip-bulk", action="store_true", help="measure no bulk update")
    parser.add_argument("--child", choices=("none", "bulk", "edit"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.keep, args.rows, args.suppressions)
        return
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not args.skip_commands:
            figures += bench_commands(
                folder / "site",
                args.rows,
                args.runs,
                args.import_rows or args.rows,
                args.skip_import,
            )
        path = generate(folder, args.rows)
        print(f"{args.rows} rows, {path.stat().st_size / 2**20:.1f} MiB file")
        if not args.skip_bulk:
            figures += bench_children(folder, path, args.rows, args.suppressions, args.skip_edit)
        readers = SubscriberList(folder, FixedClock(datetime(2026, 11, 24, tzinfo=UTC)))

        def iterate() -> int:
            return sum(1 for _ in readers.iter(Status.ACTIVE))

        started = time.perf_counter()
        active = iterate()
        seconds = time.perf_counter() - started
        print(f"iter(active): {args.rows / seconds:,.0f} rows/s")
        figures.append(measured("iter(Status.ACTIVE), rows/s", args.rows / seconds, digits=0))
        figures += measure(
            "iter(Status.ACTIVE)", lambda: active if iterate() == active else "mismatch"
        )
        figures += measure("counts()", lambda: readers.counts()[Status.ACTIVE])

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
            figures += measure("edit() one change + save", edit_one)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"process max RSS {rss:.1f} MiB (includes generating the file)")
        figures.append(
            measured(
                "this process, max RSS",
                rss,
                "MiB",
                digits=1,
                note="no target: includes writing the list",
            )
        )
        if not args.skip_bulk:
            figures += bench_bulk(folder, path, args.rows, args.suppressions)
    print_figures(
        f"bench_subscribers.py ({args.rows:,} readers; 'then': median of {args.runs}; import's "
        "time target: 1 s + 29 s × (its rows + the list's) / 2,000,000)",
        figures,
    )


if __name__ == "__main__":
    main()
