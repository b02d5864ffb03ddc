"""Send one issue to 1,000,000 synthetic readers through the loopback SendGrid, files store and
PostgreSQL store, at zero latency and at a 150 ms round trip; every figure beside its target.

    .venv/bin/python bench/bench_send.py [--sizes 1000000] [--stores files postgres]
        [--latencies 0 0.15] [--concurrency 8] [--modes loopback dry] [--steady]

Each run is a fresh child process (its peak RSS is its own: ``ru_maxrss``) that sends through
the real sendgrid client to the loopback SendGrid (``peers/sendgrid_server.py``) running in
ANOTHER process, with counts only (``--no-record``), every 50th request checked against the
schema (``--check-every``, so the peer's CPU stays small on a small machine) and
``--latency`` seconds added to every request and to every new connection (a round trip). The
delivery ledger is written and fsynced per batch as in a real send. Reported per run:

- requests: the client's count and the peer's, both must be ceil(N/1000);
- connections the peer accepted (kept alive: ``sendgrid.concurrency`` at most, not one per
  request) and the most requests it had in flight at once;
- wall time and client CPU (``time.process_time``: every thread of the child) of ``deliver``,
  the child's peak RSS, and ``Composer.compose``/``premailer.transform`` calls during the send
  (0: the issue is composed once, before).

The files store gets a list file written straight in its format (sorted, one row per reader),
the PostgreSQL store a throwaway cluster (``peers/postgres.py``, Debian's server; ``make
services``) filled through the store's restore (``bench_postgres.fill_database``: ``COPY``).
With ``--steady`` each run is repeated as a second send (another issue, the same list): the
first send of a fresh list file checks every row before it starts (the files store has no index
of it yet), a second finds the index and only streams the rows.

Ends with the figures of every run, each beside its target (``bench/report.py``): exactly
ceil(N/1000) requests (client and peer) and N delivered; client CPU ≤ 10 s and wall ≤ 20 s at
zero latency, ≤ 45 s at a 150 ms round trip for 1,000,000 readers, scaled with N (10 us, 20 us,
45 us a reader; no wall target at other latencies); peak RSS ≤ 120 MiB; connections and
requests in flight ≤ ``sendgrid.concurrency``; no compose or premailer call during the send.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peers import postgres  # noqa: E402

from bench.bench_postgres import EXE, fill_database  # noqa: E402
from bench.inputs import NOW, SECRET  # noqa: E402
from bench.report import Figure, against, against_or_measured, print_figures  # noqa: E402

CHECK_EVERY = 50
CPU_TARGET = 10.0  # seconds of client CPU for 1,000,000 readers
WALL_TARGETS = {0.0: 20.0, 0.15: 45.0}  # seconds of wall time, by round trip
RSS_TARGET = 120.0  # MiB
STAMP = "2026-11-01T00:00:00Z"


def reader(index: int) -> tuple[str, str, str]:
    """(email, name, status) of synthetic reader ``index``: every one active."""
    return f"r{index:07d}@example.com", f"Reader {index}", "active"


def write_list(folder: Path, count: int) -> None:
    from crusader_mail.storage.files.list_format import HEADER, MARKER

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "subscribers.csv").open("w", encoding="utf-8") as out:
        out.write(f"{MARKER}\n{HEADER}\n")
        for index in range(count):
            email, name, status = reader(index)
            out.write(f"{email},{name},{status},{STAMP},import,{STAMP},import,,,,{STAMP}\n")


def keep_index(folder: Path) -> None:
    """Keep the files store's index of the list file written straight (any change through the
    store keeps one): the list checked once, as a send's ``counts`` does, and its index saved."""
    from crusader_mail.clock import FixedClock
    from crusader_mail.storage.files.list_file import Snapshot
    from crusader_mail.storage.files.subscribers import SubscriberList

    roster = SubscriberList(folder, FixedClock(NOW))
    snapshot = Snapshot.open(roster.path)
    assert snapshot is not None
    with snapshot:
        state = roster._checked(snapshot)
    assert state is not None
    roster.index.save(state, [])


# --- one send, in the child -------------------------------------------------------------------


def one(config: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child: one send, measured."""
    import premailer
    from pydantic import SecretStr

    from bench.inputs import bench_settings, example_issue
    from crusader_mail.clock import FixedClock
    from crusader_mail.compose import composer
    from crusader_mail.delivery.client import client_factory
    from crusader_mail.delivery.engine import deliver
    from crusader_mail.delivery.transport import BatchTransport, DryRunTransport, SendGridTransport
    from crusader_mail.storage import open_store

    calls = {"compose": 0, "premailer": 0}
    real_compose, real_transform = composer.Composer.compose, premailer.transform

    def counted_compose(*args: Any, **kwargs: Any) -> Any:
        calls["compose"] += 1
        return real_compose(*args, **kwargs)

    def counted_transform(*args: Any, **kwargs: Any) -> Any:
        calls["premailer"] += 1
        return real_transform(*args, **kwargs)

    composer.Composer.compose = counted_compose  # type: ignore[method-assign]
    premailer.transform = counted_transform
    folder = Path(config["folder"])
    options: dict[str, Any] = {"concurrency": config["concurrency"]}
    if config["url"]:
        options.update(api_url=config["url"], api_key=SecretStr(config["key"]))
    settings = bench_settings(folder, **options)
    if config["database_url"]:
        settings = settings.model_copy(update={"database_url": SecretStr(config["database_url"])})
    clock = FixedClock(NOW)
    issue = example_issue(settings).model_copy(update={"issue_id": config["issue_id"]})
    store = open_store(settings, clock)
    transport: BatchTransport
    if config["mode"] == "loopback":
        transport = SendGridTransport(settings, clock, client_factory(settings))
    else:
        transport = DryRunTransport(settings, clock)
    calls["compose"] = calls["premailer"] = 0  # count only what the send does
    cpu, wall = time.process_time(), time.perf_counter()
    report = deliver(issue, store.roster, store.ledgers, transport, settings, clock)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    store.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "requests": report.requests,
        "delivered": report.delivered,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": peak_kb / 1024,
        "compose_calls": calls["compose"],
        "premailer_calls": calls["premailer"],
    }


# --- the runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    size: int
    store: str  # "files" or "postgres"
    mode: str  # "loopback" or "dry"
    latency: float
    concurrency: int


class Peer:
    """The loopback SendGrid in its own process, counts only."""

    def __init__(self, latency: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "peers.sendgrid_server",
                "--no-record",
                "--latency",
                str(latency),
                "--check-every",
                str(CHECK_EVERY),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline().split()[1])}"

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        stats: dict[str, Any] = json.loads(self.process.stdout.readline())
        return stats

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)
        if self.process.stdout is not None:
            self.process.stdout.close()


def measure(run: Run, number: int, folder: Path, database_url: str) -> dict[str, Any]:
    """One send in a fresh child, against a fresh peer: an issue of its own (``number``), so
    no ledger says anyone had it."""
    shutil.rmtree(folder / "outbox", ignore_errors=True)
    peer = Peer(run.latency) if run.mode == "loopback" else None
    config = {
        "issue_id": f"2026-11-23-bench{number:03d}",
        "folder": str(folder),
        "mode": run.mode,
        "url": peer.url if peer else "",
        "key": "SG.loopback-test-key",
        "concurrency": run.concurrency,
        "database_url": database_url if run.store == "postgres" else "",
    }
    try:
        child = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(config)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            raise SystemExit(f"bench_send: the send failed:\n{child.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
        if peer is not None:
            stats = peer.stats()
            result.update(
                server_requests=stats["requests"],
                server_recipients=stats["recipients"],
                connections=stats["connections"],
                max_in_flight=stats["max_in_flight"],
            )
    finally:
        if peer is not None:
            peer.stop()
    return result


@dataclass
class Stores:
    """The readers in each store asked for: a list file, and a database when asked."""

    root: Path
    files: Path
    database_url: str = ""
    cluster: postgres.Postgres | None = None


def prepare(prepared: Stores, size: int, stores: list[str]) -> Stores:
    root = prepared.root
    write_list(prepared.files / "subscribers", size)
    if "postgres" in stores:
        if not postgres.available():
            raise SystemExit("bench_send: PostgreSQL is not installed (make services)")
        prepared.cluster = postgres.start_postgres(root / "cluster")
        url = prepared.cluster.create_database(f"send{size}")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "CRUSADER_MAIL_SECRET_KEY": SECRET,
            "CRUSADER_MAIL_DATABASE_URL": url,
        }
        subprocess.run([str(EXE), "db", "upgrade"], env=env, cwd=root, check=True)
        seconds = fill_database(url, map(reader, range(size)))
        print(f"{size:,} readers restored into PostgreSQL (COPY) in {seconds:.1f} s", flush=True)
        prepared.database_url = url
    return prepared


# --- the report -------------------------------------------------------------------------------


def figures_of(run: Run, result: dict[str, Any], name: str) -> list[Figure]:
    """The figures of one run, each beside its target: the targets are for 1,000,000 readers
    and scale with the size (client CPU 10 us a reader; wall 20 us a reader at zero latency,
    45 us at a 150 ms round trip, no target at other latencies)."""
    expected = math.ceil(run.size / 1000)
    scale = run.size / 1_000_000
    target = f"{expected:,} = ceil(N/1000)"
    counts = [("client", result["requests"])]
    if "server_requests" in result:  # a loopback run: the peer counts too
        counts.append(("peer", result["server_requests"]))
    found = [
        against(f"{name}: requests, {side}", count, "=", expected, bound_text=target, digits=0)
        for side, count in counts
    ]
    found += [
        against(f"{name}: delivered", result["delivered"], "=", run.size, digits=0),
        against(f"{name}: client CPU", result["cpu_s"], "≤", CPU_TARGET * scale, "s", digits=3),
    ]
    wall_target = WALL_TARGETS.get(run.latency)
    wall = None if wall_target is None else wall_target * scale
    found.append(against_or_measured(f"{name}: wall", result["wall_s"], "≤", wall, "s", digits=3))
    found.append(
        against(f"{name}: peak RSS", result["peak_rss_mib"], "≤", RSS_TARGET, "MiB", digits=1)
    )
    if "connections" in result:
        kept = f"{run.concurrency} = sendgrid.concurrency"
        found += [
            against(
                f"{name}: connections (kept alive)",
                result["connections"],
                "≤",
                run.concurrency,
                bound_text=kept,
                digits=0,
            ),
            against(
                f"{name}: max requests in flight",
                result["max_in_flight"],
                "≤",
                run.concurrency,
                bound_text=kept,
                digits=0,
            ),
        ]
    for calls in ("compose", "premailer"):
        found.append(
            against(
                f"{name}: {calls} calls during the send",
                result[f"{calls}_calls"],
                "=",
                0,
                digits=0,
            )
        )
    return found


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(one(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --sizes 20000 --stores files --latencies 0",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--stores", nargs="+", default=["files", "postgres"])
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 0.15])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["loopback"])
    parser.add_argument(
        "--steady",
        action="store_true",
        help="send each run a second time (another issue, the same list: the files store's "
        "index of the list is present then, so the send does not check every row first)",
    )
    args = parser.parse_args()
    number = 0
    figures: list[Figure] = []
    for size in args.sizes:
        root = Path(tempfile.mkdtemp(prefix="bench-send-"))
        stores = Stores(root, root / "files")
        try:
            stores = prepare(stores, size, args.stores)
            for store in args.stores:
                for mode in args.modes:
                    for latency in args.latencies if mode == "loopback" else [0.0]:
                        run = Run(size, store, mode, latency, args.concurrency)
                        for second in [False, True] if args.steady else [False]:
                            if second and store == "files":
                                keep_index(stores.files / "subscribers")
                            number += 1
                            result = measure(run, number, stores.files, stores.database_url)
                            print(
                                f"{title(run, steady=second)}: {result['delivered']:,} "
                                f"delivered, wall {result['wall_s']:.2f} s, client CPU "
                                f"{result['cpu_s']:.2f} s, peak RSS "
                                f"{result['peak_rss_mib']:.1f} MiB",
                                flush=True,
                            )
                            name = short(run, steady=second, sized=len(args.sizes) > 1)
                            figures += figures_of(run, result, name)
        finally:
            if stores.cluster is not None:
                stores.cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
    sizes = " and ".join(f"{size:,}" for size in args.sizes)
    print_figures(
        f"bench_send.py ({sizes} readers, sendgrid.concurrency {args.concurrency}; "
        "time targets for 1,000,000 readers scaled to N)",
        figures,
    )


def title(run: Run, *, steady: bool = False) -> str:
    again = ", steady state (a second send, the list's index present)" if steady else ""
    if run.mode != "loopback":
        return f"{run.size:,} readers, {run.store} store, dry run{again}"
    return (
        f"{run.size:,} readers, {run.store} store, loopback SendGrid, round trip "
        f"{run.latency * 1000:.0f} ms, sendgrid.concurrency {run.concurrency}{again}"
    )


def short(run: Run, *, steady: bool, sized: bool) -> str:
    """The run's name in the figures: store, round trip (or dry run), steady; the size first
    when there are several."""
    trip = f"{run.latency * 1000:.0f} ms" if run.mode == "loopback" else "dry run"
    name = f"{run.store}, {trip}{', steady' if steady else ''}"
    return f"{run.size:,}: {name}" if sized else name


if __name__ == "__main__":
    main()
