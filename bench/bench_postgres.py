"""The PostgreSQL store on a 1,000,000-reader list, next to the files store with the same readers.

    .venv/bin/python bench/bench_postgres.py [--rows 1000000] [--runs 5]

Starts a throwaway PostgreSQL cluster (``peers/postgres.py``, Debian's server; ``make
services`` installs it), runs ``crusader-mail db upgrade``, and fills ``readers`` with ``--rows``
readers through the store's restore (``COPY``; 90 % active, token hints keyed with the bench
secret); the files store gets the same readers as ``subscribers.csv``. Then, each figure the median of ``--runs`` runs
(min and max beside it):

- ``subscribers add`` and ``subscribers remove``: the real command in a fresh process, a
  different reader each run, wall time from start to exit (target with PostgreSQL: < 0.5 s).
  ``--version`` is the floor every command pays (interpreter and imports).
- ``iter(active)``: streaming the active readers (server-side cursor vs reading the CSV) in a
  fresh child process: wall time, the child's CPU time and readers per second.
- a dry-run send (``deliver`` with the dry-run transport, which writes the outbox) in a fresh
  child: wall time and client CPU; the target is PostgreSQL within 1.2x the files store's CPU.

Ends with the figures (medians) beside their targets (``bench/report.py``); the files store's
``add``/``remove`` beside issue 15's target for it (< 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peers import postgres  # noqa: E402

from bench.inputs import NOW, SECRET, bench_settings, example_issue  # noqa: E402
from bench.report import Figure, against, measured, print_figures  # noqa: E402

EXE = Path(sys.executable).with_name("crusader-mail")
STAMP = "2026-11-01T00:00:00Z"


def reader_row(index: int) -> tuple[str, str, str]:
    """(email, name, status) of synthetic reader ``index``: every tenth has left."""
    status = "unsubscribed" if index % 10 == 9 else "active"
    return f"r{index:07d}@example.com", f"Reader {index}", status


# --- filling both stores ----------------------------------------------------------------------


def fill_database(url: str, readers: Iterable[tuple[str, str, str]]) -> float:
    """Store (address, name, status) readers through the store's own restore (what
    ``subscribers import --restore`` does: ``COPY``, token hints keyed with the bench secret),
    then ``VACUUM ANALYZE``; seconds taken. Each joined by import; one who is not active left
    by email."""
    import psycopg

    from crusader_mail.clock import FixedClock
    from crusader_mail.models import Source, Status, Subscriber
    from crusader_mail.storage.postgres import PostgresStore
    from crusader_mail.util.tokens import Signer

    when = NOW.replace(month=11, day=1, hour=0)
    store = PostgresStore(url, FixedClock(NOW), lambda: SECRET, Signer(SECRET).hint)
    records = (
        Subscriber(
            email=email,
            name=name,
            status=Status(status),
            subscribed_at=when,
            subscribed_via=Source.IMPORT,
            confirmed_at=when,
            confirmed_via=Source.IMPORT,
            left_at=None if status == "active" else when,
            left_via=None if status == "active" else Source.EMAIL,
            updated_at=when,
        )
        for email, name, status in readers
    )
    started = time.perf_counter()
    try:
        store.roster.restore(records)
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def fill_files(folder: Path, rows: int) -> None:
    from crusader_mail.storage.files.list_format import HEADER, MARKER

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "subscribers.csv").open("w", encoding="utf-8") as out:
        out.write(f"{MARKER}\n{HEADER}\n")
        for index in range(rows):
            email, name, status = reader_row(index)
            left = f"{STAMP},email" if status != "active" else ","
            out.write(f"{email},{name},{status},{STAMP},import,{STAMP},import,{left},,{STAMP}\n")


# --- measuring --------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    """``median (min–max)``."""
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def command_times(
    env: dict[str, str], folder: Path, runs: int, args: Callable[[int, int], list[str]], store: int
) -> list[float]:
    """Wall seconds of ``crusader-mail`` with ``args(run, store)`` in a fresh process, once per
    run (``store``: 0 PostgreSQL, 1 files, so each store gets its own readers)."""
    times = []
    for run in range(runs):
        argv = [str(EXE), *args(run, store)]
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: {done.stderr.strip()}")
    return times


def child(what: str, store: str, folder: Path, url: str) -> dict[str, float]:
    """Runs in a fresh child: ``iter`` or ``send`` on one store, timed (wall and CPU)."""
    from crusader_mail.clock import FixedClock
    from crusader_mail.delivery.engine import deliver
    from crusader_mail.delivery.transport import DryRunTransport
    from crusader_mail.models import Status
    from crusader_mail.storage import open_store

    settings = bench_settings(folder)
    if store == "postgres":
        from pydantic import SecretStr

        settings = settings.model_copy(update={"database_url": SecretStr(url)})
    clock = FixedClock(NOW)
    opened = open_store(settings, clock)
    job: Callable[[], int]
    if what == "iter":

        def job() -> int:
            return sum(1 for _ in opened.roster.iter(Status.ACTIVE))

    else:
        issue = example_issue(settings)
        shutil.rmtree(settings.outbox_dir, ignore_errors=True)

        def job() -> int:
            transport = DryRunTransport(settings, clock)
            return deliver(
                issue, opened.roster, opened.ledgers, transport, settings, clock
            ).delivered

    cpu, wall = time.process_time(), time.perf_counter()
    count = job()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    opened.close()
    return {"count": count, "wall": wall, "cpu": cpu}


def child_runs(what: str, store: str, folder: Path, url: str, runs: int) -> list[dict[str, float]]:
    results = []
    for _run in range(runs):
        done = subprocess.run(
            [sys.executable, __file__, "--child", what, store, str(folder), url],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


# --- the whole bench --------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what, store, folder, url = sys.argv[2:6]
        print(json.dumps(child(what, store, Path(folder), url)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --rows 10000 --runs 2",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not postgres.available():
        raise SystemExit("bench_postgres: PostgreSQL is not installed (make services)")
    root = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
    server = postgres.start_postgres(root / "cluster")
    try:
        figures = run_bench(server, root, args.rows, args.runs)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print_figures(f"bench_postgres.py ({args.rows:,} readers, median of {args.runs} runs)", figures)


STORES = {"postgres": "PostgreSQL", "files": "files store"}


def run_bench(server: postgres.Postgres, root: Path, rows: int, runs: int) -> list[Figure]:
    """Fill both stores, print each measurement as it comes; the figures."""
    url = server.create_database("bench")
    files = root / "files"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    config = files / "crusader-mail.toml"
    files.mkdir()
    config.write_text('subscribers_dir = "subscribers"\nstate_dir = "state"\n', encoding="utf-8")
    env_files = {**base, "CRUSADER_MAIL_SECRET_KEY": SECRET}
    env_pg = {**env_files, "CRUSADER_MAIL_DATABASE_URL": url}
    subprocess.run([str(EXE), "db", "upgrade"], env=env_pg, cwd=files, check=True)
    seconds = fill_database(url, map(reader_row, range(rows)))
    fill_files(files / "subscribers", rows)
    print(f"{rows:,} readers: restored into PostgreSQL (COPY) in {seconds:.1f} s", flush=True)

    print("\nwhole commands, wall s: median (min–max)", flush=True)
    print(f"{'command':<34} {'postgres':>24} {'files':>24}")
    step = rows // (2 * runs + 1) // 10 * 10  # active readers spread over the list

    def remove(run: int, store: int) -> list[str]:
        email, _name, _status = reader_row(step * (2 * run + store + 1))
        return ["subscribers", "remove", email]

    # (label, the figures' name, the targets in wall s for PostgreSQL and the files store)
    commands: list[tuple[str, str, tuple[float, float] | None, Callable[[int, int], list[str]]]] = [
        ("crusader-mail --version", "--version", None, lambda run, store: ["--version"]),
        (
            "subscribers add NEW",
            "subscribers add",
            (0.5, 1.0),
            lambda run, store: ["subscribers", "add", f"new{run}@example.com"],
        ),
        ("subscribers remove READER", "subscribers remove", (0.5, 1.0), remove),
    ]
    figures = []
    for label, name, targets, args in commands:
        pg = command_times(env_pg, files, runs, args, 0)
        fs = command_times(env_files, files, runs, args, 1)
        print(f"{label:<34} {spread(pg):>24} {spread(fs):>24}", flush=True)
        for times, store, index in ((pg, "PostgreSQL", 0), (fs, "files store", 1)):
            title = f"{name} ({store}), wall"
            median = statistics.median(times)
            figures.append(
                measured(title, median, "s", digits=3, note="no target: every command's floor")
                if targets is None
                else against(title, median, "<", targets[index], "s", digits=3)
            )

    print("\nin a fresh child, medians: wall s, CPU s, readers/s", flush=True)
    for what in ("iter", "send"):
        by_store = {
            store: child_runs(what, store, files, url, runs) for store in ("postgres", "files")
        }
        for store, results in by_store.items():
            wall = statistics.median(r["wall"] for r in results)
            cpu = statistics.median(r["cpu"] for r in results)
            count = results[0]["count"]
            print(
                f"{what:<5} {store:<9} readers {count:>9,.0f}  wall {wall:7.2f}  "
                f"cpu {cpu:7.2f}  {count / wall:>11,.0f}/s",
                flush=True,
            )
            name = f"{what} {count:,.0f} readers ({STORES[store]})"
            figures.append(measured(f"{name}, wall", wall, "s"))
            figures.append(measured(f"{name}, client CPU", cpu, "s"))
            figures.append(measured(f"{name}, readers/s", count / wall, digits=0))
        ratio = statistics.median(
            pg["cpu"] / fs["cpu"]
            for pg, fs in zip(by_store["postgres"], by_store["files"], strict=True)
        )
        print(f"{what:<5} client CPU postgres/files: {ratio:.2f}x", flush=True)
        ratio_name = f"{what}: client CPU, PostgreSQL / files store"
        figures.append(
            against(ratio_name, ratio, "≤", 1.2, "x")
            if what == "send"
            else measured(ratio_name, ratio, "x", note="no target (send's is ≤ 1.2x)")
        )
    return figures


if __name__ == "__main__":
    main()
