"""One-click unsubscribes over real HTTP on a 1,000,000-reader PostgreSQL list, 200 at once.

    .venv/bin/python bench/bench_oneclick.py [--rows 1000000] [--clicks 200] [--bursts 10]
                                             [--processes 1 2] [--sendgrid up down]
                                             [--alone 100]

Starts a throwaway PostgreSQL cluster (``peers/postgres.py``), runs ``crusader-mail db
upgrade`` and restores ``--rows`` readers into it (``Roster.restore``, what ``subscribers import
--restore`` does: ``COPY``), every third one spelt with capitals. The loopback SendGrid runs in
a process of its own (``--sendgrid down``: a port nobody listens on). First it times token
lookups (``Roster.candidates``) by the hint tokens carry now and by the old-form hint (the
first of those fills the old-form hints in), and ``--alone`` POSTs sent one at a time to one
``serve``. Then, for each ``--processes``
value it starts that many ``crusader-mail serve`` processes (one uvicorn worker each, each on
its own port; the client spreads the POSTs over them in turn, as a reverse proxy would), then
sends ``--bursts`` bursts of ``--clicks`` RFC 8058 one-click POSTs, all of a burst at once, each
to a different reader, over plain HTTP/1.1 (asyncio, one connection per POST, so the client
costs little CPU beside the servers). Reported: the latency of every POST (connect to the end
of the answer) as median, p90, p99 and max, each burst's wall time, and POSTs per second. Every
POST must answer 200; afterwards exactly the clicked readers are unsubscribed, every row is
still there, and no mail was sent (after a one-click the page is the goodbye). Target: p99 <
100 ms.

Also reported, since a burst's p99 is mostly its queue (the last POST waits for the ones
before it): the CPU time per POST of the ``serve`` processes and of the PostgreSQL server
(from ``/proc``, over the measured bursts), and the machine's load average, as other work on
the machine slows every figure down. And the floor under that load: the same bursts sent to
a server that only answers (uvicorn with httptools on uvloop, as ``serve``, a page of the
goodbye's size, nothing else), which no ``serve`` can beat on this machine at this moment. Ends with the figures beside their targets
(``bench/report.py``): the p99 of every burst setting against 100 ms; the rest has no target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peers import postgres  # noqa: E402
from peers.sendgrid_server import API_KEY  # noqa: E402

from bench.bench_postgres import fill_database  # noqa: E402
from bench.inputs import NOW, SECRET  # noqa: E402
from bench.report import Figure, against, measured, print_figures  # noqa: E402

EXE = Path(sys.executable).with_name("crusader-mail")
ONE_CLICK = b"List-Unsubscribe=One-Click"
WARM = 20  # POSTs before the one-at-a-time figures


def address(index: int) -> str:
    return f"Reader.{index:07d}@example.com" if index % 3 == 0 else f"r{index:07d}@example.com"


# --- the list -------------------------------------------------------------------------------


def statuses(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM readers GROUP BY status").fetchall()
    return {status: int(count) for status, count in rows}


# --- the peers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_sendgrid() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "peers.sendgrid_server", "--no-record"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline().split()[1])


def sendgrid_requests(process: subprocess.Popen[str]) -> int:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("stats\n")
    process.stdin.flush()
    return int(json.loads(process.stdout.readline())["requests"])


def start_servers(
    folder: Path, env: dict[str, str], count: int
) -> list[tuple[subprocess.Popen[bytes], int]]:
    servers = []
    for _ in range(count):
        port = free_port()
        process = subprocess.Popen(
            [str(EXE), "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        servers.append((process, port))
    start_servers_wait(servers)
    return servers


def start_servers_wait(servers: list[tuple[subprocess.Popen[bytes], int]]) -> None:
    """Until each server listens (``SystemExit`` when one exits or takes a minute)."""
    for process, port in servers:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"serve exited: {process.communicate()[1].decode()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not start") from None
                time.sleep(0.05)


def stop_servers(servers: list[tuple[subprocess.Popen[bytes], int]]) -> None:
    for process, _port in servers:
        process.send_signal(signal.SIGTERM)
    for process, _port in servers:
        _out, err = process.communicate(timeout=60)
        if b"Traceback" in err:
            raise SystemExit(f"serve failed:\n{err.decode()}")


# --- the clicks -------------------------------------------------------------------------------


async def click(port: int, token: str) -> tuple[int, float]:
    """One RFC 8058 POST on a connection of its own: (status, seconds)."""
    request = (
        f"POST /unsubscribe?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(ONE_CLICK)}\r\nConnection: close\r\n\r\n"
    ).encode() + ONE_CLICK
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()  # to the end: the server closes after the answer
    seconds = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1]), seconds


async def burst(ports: list[int], tokens: list[str]) -> list[tuple[int, float]]:
    return await asyncio.gather(
        *(click(ports[index % len(ports)], token) for index, token in enumerate(tokens))
    )


def no_mail(sendgrid: subprocess.Popen[str], requests: int) -> None:
    """SendGrid has had no more than ``requests`` mail sends: a one-click sends no goodbye."""
    if sendgrid_requests(sendgrid) > requests:
        raise SystemExit("a one-click sent mail: after a one-click the page is the goodbye")


def tokens_for(indexes: list[int]) -> list[str]:
    from crusader_mail.util.tokens import Purpose, Signer

    signer = Signer(SECRET)
    return [signer.make(Purpose.UNSUBSCRIBE, address(index), NOW) for index in indexes]


class Readers:
    """Distinct readers to click, spread over the whole list (neighbours far apart in time)."""

    def __init__(self, rows: int, total: int) -> None:
        step = rows // total
        order = [index * step + 5 for index in range(total)]
        self._order = iter(order[::2] + order[1::2])

    def take(self, count: int) -> list[int]:
        return [next(self._order) for _ in range(count)]


def cpu_seconds(root_pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``root_pids`` and their descendants now."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parent[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid, seconds in used.items():
        ancestor = pid
        while ancestor > 1 and ancestor not in root_pids:
            ancestor = parent.get(ancestor, 1)
        if ancestor in root_pids:
            total += seconds
    return total


ANSWER = b"x" * 2600  # about the size of the goodbye page, headers left aside


def answer_only(port: int) -> None:
    """Serve ``ANSWER`` to every request on ``port``, as ``serve`` runs (uvicorn, httptools,
    uvloop), doing nothing else: the floor of the figures."""
    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(ANSWER)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": ANSWER})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --- the whole bench --------------------------------------------------------------------------


def lookups(url: str, rows: int, count: int = 200) -> list[Figure]:
    """How long finding a token's reader takes (``Roster.candidates``), by the hint tokens carry
    now and by the old-form hint (tokens mailed before one reader per mailbox, kept only for
    the third of the list spelt with capitals): the first old-form lookup fills those in."""
    from crusader_mail.clock import FixedClock
    from crusader_mail.storage.postgres import PostgresStore
    from crusader_mail.util.tokens import Signer

    signer = Signer(SECRET)
    store = PostgresStore(url, FixedClock(NOW), lambda: SECRET, signer.hint)
    step = rows // count
    try:
        started = time.perf_counter()
        first = store.roster.candidates(signer.old_hint(address(0)), signer.old_hint)
        filled = time.perf_counter() - started
        assert first == [address(0)], first
        figures = {}
        for form, hint_of, offset in (("new", signer.hint, 1), ("old", signer.old_hint, 3)):
            seconds = []
            for index in range(offset, rows, 3 * step)[:count]:
                hint = hint_of(address(index))
                started = time.perf_counter()
                assert store.roster.candidates(hint, hint_of) == [address(index)]
                seconds.append((time.perf_counter() - started) * 1000)
            figures[form] = seconds
    finally:
        store.close()
    print(
        f"token lookups on {rows:,} readers: the first old-form one {filled:.1f} s (fills the "
        f"old-form hints of {rows // 3:,} readers spelt with capitals); then ms median/p99: "
        + ", ".join(
            f"{form} {statistics.median(ms):.2f}/{percentile(ms, 0.99):.2f}"
            for form, ms in figures.items()
        ),
        flush=True,
    )

    found = [measured("first old-form token lookup (fills the hints)", filled, "s", digits=1)]
    for form, ms in figures.items():
        found.append(
            measured(f"token lookup, {form}-form hint, median", statistics.median(ms), "ms")
        )
        found.append(measured(f"token lookup, {form}-form hint, p99", percentile(ms, 0.99), "ms"))
    return found


def main() -> None:
    if sys.argv[1:2] == ["--answer-only"]:  # the floor's server (see the docstring)
        answer_only(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --rows 10000 --clicks 20 --bursts 2 --processes 1 --sendgrid up "
        "--alone 10",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sendgrid", nargs="+", choices=["up", "down"], default=["up", "down"])
    parser.add_argument("--alone", type=int, default=100, help="POSTs sent one at a time first")
    args = parser.parse_args()
    if not postgres.available():
        raise SystemExit("bench_oneclick: PostgreSQL is not installed (make services)")
    root = Path(tempfile.mkdtemp(prefix="bench-oneclick-"))
    server = postgres.start_postgres(root / "cluster", max_connections=300)
    sendgrid, sendgrid_port = start_sendgrid()
    try:
        figures = run_bench(server, root, args, sendgrid, sendgrid_port)
    finally:
        assert sendgrid.stdin is not None
        sendgrid.stdin.close()
        sendgrid.wait(timeout=30)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print_figures(
        f"bench_oneclick.py ({args.rows:,} readers in PostgreSQL, {args.clicks} POSTs at once, "
        f"{args.bursts} bursts)",
        figures,
    )


def run_bench(
    server: postgres.Postgres,
    root: Path,
    args: argparse.Namespace,
    sendgrid: subprocess.Popen[str],
    sendgrid_port: int,
) -> list[Figure]:
    """Fill the list, print each measurement as it comes; the figures."""
    url = server.create_database("bench")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "CRUSADER_MAIL_DATABASE_URL": url,
        "CRUSADER_MAIL_SECRET_KEY": SECRET,
        "SENDGRID_API_KEY": API_KEY,
    }
    subprocess.run([str(EXE), "db", "upgrade"], env=env, cwd=root, check=True, capture_output=True)
    seconds = fill_database(url, ((address(n), f"Reader {n}", "active") for n in range(args.rows)))
    print(f"{args.rows:,} readers: restored (COPY) in {seconds:.1f} s", flush=True)
    runs = [(count, state) for state in args.sendgrid for count in args.processes]
    readers = Readers(args.rows, WARM + args.alone + args.clicks * (args.bursts + 1) * len(runs))
    bench = Bench(url, env, root, server, sendgrid, sendgrid_port, readers, args.rows)

    figures = lookups(url, args.rows)
    alone = bench.one_at_a_time(args.alone)
    print(
        f"\none POST at a time (1 serve, SendGrid up), {args.alone} POSTs: latency ms median "
        f"{statistics.median(alone):.1f}, p99 {percentile(alone, 0.99):.1f}, "
        f"max {max(alone):.1f}",
        flush=True,
    )
    once = f"one POST at a time ({args.alone}, 1 serve)"
    figures.append(measured(f"{once}: latency median", statistics.median(alone), "ms", digits=1))
    figures.append(measured(f"{once}: latency p99", percentile(alone, 0.99), "ms", digits=1))
    floor = bench.floor(args.clicks, args.bursts)
    print(
        f"\nthe floor: {args.clicks} POSTs at once, {args.bursts} bursts, to a server that only "
        f"answers: latency ms median {statistics.median(floor.latencies):.1f}, p99 "
        f"{percentile(floor.latencies, 0.99):.1f}; its CPU {floor.serve_cpu:.2f} ms/POST; load "
        f"{floor.load:.1f}",
        flush=True,
    )
    only = f"the floor: {args.clicks} at once to a server that only answers"
    figures += [
        measured(f"{only}: latency median", statistics.median(floor.latencies), "ms", digits=1),
        measured(f"{only}: latency p99", percentile(floor.latencies, 0.99), "ms", digits=1),
        measured(f"{only}: its CPU per POST", floor.serve_cpu, "ms"),
        measured(f"{only}: load average (1 min)", floor.load, digits=1),
    ]
    print(
        f"\n{args.clicks} one-click POSTs at once, {args.bursts} bursts; latency ms over every POST",
        flush=True,
    )
    print(
        f"{'serve':>8} {'sendgrid':>8} {'median':>7} {'p90':>7} {'p99':>7} {'max':>7} "
        f"{'burst s (median)':>17} {'POST/s':>7} {'serve CPU ms/POST':>18} "
        f"{'PostgreSQL CPU ms/POST':>23} {'load':>5}"
    )
    for count, state in runs:
        found = bench.bursts(count, state, args.clicks, args.bursts)
        latencies, walls = found.latencies, found.walls
        print(
            f"{count:>8} {state:>8} {statistics.median(latencies):>7.1f} "
            f"{percentile(latencies, 0.9):>7.1f} {percentile(latencies, 0.99):>7.1f} "
            f"{max(latencies):>7.1f} {statistics.median(walls):>17.3f} "
            f"{len(latencies) / sum(walls):>7.0f} {found.serve_cpu:>18.2f} "
            f"{found.database_cpu:>23.2f} {found.load:>5.1f}",
            flush=True,
        )
        serves = f"{count} serve{'s' if count > 1 else ''}"
        setting = f"{args.clicks} at once, {serves}, SendGrid {state}"
        figures += [
            measured(f"{setting}: latency median", statistics.median(latencies), "ms", digits=1),
            against(
                f"{setting}: latency p99", percentile(latencies, 0.99), "<", 100, "ms", digits=1
            ),
            measured(f"{setting}: latency max", max(latencies), "ms", digits=1),
            measured(f"{setting}: POSTs/s", len(latencies) / sum(walls), digits=0),
            measured(f"{setting}: serve CPU per POST", found.serve_cpu, "ms"),
            measured(f"{setting}: PostgreSQL CPU per POST", found.database_cpu, "ms"),
            measured(f"{setting}: load average (1 min)", found.load, digits=1),
        ]
    print(
        f"\nafter: {bench.clicked:,} readers unsubscribed, {args.rows:,} rows, none lost",
        flush=True,
    )
    table = statuses(url)
    figures += [
        against(
            "readers unsubscribed (every POST answered 200)",
            table.get("unsubscribed", 0),
            "=",
            bench.clicked,
            digits=0,
            bound_text=f"the {bench.clicked:,} clicked",
        ),
        against("rows in the table", sum(table.values()), "=", args.rows, digits=0),
    ]
    return figures


@dataclass
class Measured:
    latencies: list[float]  # ms, every POST
    walls: list[float]  # s, every burst
    serve_cpu: float  # ms per POST
    database_cpu: float  # ms per POST
    load: float


@dataclass
class Bench:
    url: str
    env: dict[str, str]
    root: Path
    server: postgres.Postgres
    sendgrid: subprocess.Popen[str]
    sendgrid_port: int
    readers: Readers
    rows: int
    clicked: int = 0

    def serving(
        self, count: int, state: str
    ) -> tuple[list[tuple[subprocess.Popen[bytes], int]], int]:
        """``count`` serve processes with SendGrid ``state``; SendGrid's mail sends so far."""
        folder = self.root / f"serve-{count}-{state}-{self.clicked}"
        folder.mkdir()
        api = f"http://127.0.0.1:{self.sendgrid_port if state == 'up' else free_port()}"
        (folder / "crusader-mail.toml").write_text(
            f'templates_dir = "{REPO / "templates"}"\n'
            '[newsletter]\nname = "Biz Crusader"\nfrom_email = "news@bizcrusader.example"\n'
            'unsubscribe_url = "https://mail.bizcrusader.example/unsubscribe"\n'
            f'[sendgrid]\napi_url = "{api}"\nmax_retries = 2\nbackoff_base = 0.5\n',
            encoding="utf-8",
        )
        before = sendgrid_requests(self.sendgrid)
        return start_servers(folder, self.env, count), before

    def click(self, ports: list[int], count: int) -> list[float]:
        """``count`` readers' POSTs at once; their latencies in ms (every one must be 200)."""
        answers = asyncio.run(burst(ports, tokens_for(self.readers.take(count))))
        self.clicked += count
        bad = [status for status, _seconds in answers if status != 200]
        if bad:
            raise SystemExit(f"{len(bad)} POSTs failed: {sorted(set(bad))}")
        return [seconds * 1000 for _status, seconds in answers]

    def check(self) -> None:
        """Exactly the readers clicked so far have left; every row is still there."""
        found = statuses(self.url)
        if found.get("unsubscribed") != self.clicked or sum(found.values()) != self.rows:
            raise SystemExit(f"the table is not as clicked: {found} (clicked {self.clicked})")

    def one_at_a_time(self, count: int) -> list[float]:
        servers, _before = self.serving(1, "up")
        ports = [port for _process, port in servers]
        try:
            self.click(ports, WARM)  # warm: imports, connections
            latencies = [self.click(ports, 1)[0] for _ in range(count)]
        finally:
            stop_servers(servers)
        self.check()
        return latencies

    def floor(self, clicks: int, bursts: int) -> Measured:
        """The bursts sent to a server that only answers (:func:`answer_only`)."""
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, __file__, "--answer-only", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            start_servers_wait([(process, port)])
            ports = [port]
            asyncio.run(burst(ports, ["-"] * clicks))  # warm
            used = cpu_seconds([process.pid])
            latencies: list[float] = []
            walls: list[float] = []
            for _ in range(bursts):
                started = time.perf_counter()
                answers = asyncio.run(burst(ports, ["-"] * clicks))
                walls.append(time.perf_counter() - started)
                latencies += [seconds * 1000 for _status, seconds in answers]
            serve_cpu = (cpu_seconds([process.pid]) - used) * 1000 / len(latencies)
            load = os.getloadavg()[0]
        finally:
            stop_servers([(process, port)])
        return Measured(latencies, walls, serve_cpu, 0.0, load)

    def bursts(self, count: int, state: str, clicks: int, bursts: int) -> Measured:
        servers, before = self.serving(count, state)
        ports = [port for _process, port in servers]
        database = [self.server.process.pid]
        try:
            self.click(ports, clicks)  # warm: imports, connections
            pids = [process.pid for process, _port in servers]
            cpu = cpu_seconds(pids), cpu_seconds(database)
            latencies: list[float] = []
            walls: list[float] = []
            for _ in range(bursts):
                started = time.perf_counter()
                latencies += self.click(ports, clicks)
                walls.append(time.perf_counter() - started)
            no_mail(self.sendgrid, before)
            serve_cpu = (cpu_seconds(pids) - cpu[0]) * 1000 / len(latencies)
            database_cpu = (cpu_seconds(database) - cpu[1]) * 1000 / len(latencies)
            load = os.getloadavg()[0]
        finally:
            stop_servers(servers)
        self.check()
        return Measured(latencies, walls, serve_cpu, database_cpu, load)


if __name__ == "__main__":
    main()
