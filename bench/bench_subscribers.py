"""Benchmark the subscriber list: streaming ``iter`` over a big generated list, and ``edit``.

    .venv/bin/python bench/bench_subscribers.py [--rows 1000000] [--keep DIR] [--skip-edit]

Writes a synthetic list (readers ``reader0000000@example.com``…, 90 % active) to a temporary
folder, then measures, each with time.perf_counter and separately under tracemalloc:
``iter(Status.ACTIVE)`` (what the sender does), ``counts()``, and one ``edit()`` that changes
one reader. The target from issue 4: the sender iterates 1,000,000 readers within 150 MB peak.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from crusader_mail.clock import FixedClock
from crusader_mail.models import Source, Status
from crusader_mail.subscriber_csv import HEADER, MARKER
from crusader_mail.subscribers import LIST_FILE, SubscriberList

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--skip-edit", action="store_true", help="measure only the streaming reads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = generate(folder, args.rows)
        print(f"{args.rows} rows, {path.stat().st_size / 2**20:.1f} MiB file")
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


if __name__ == "__main__":
    main()
