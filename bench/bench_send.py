"""Send one issue to 100,000 and 1,000,000 synthetic readers: dry run and real loopback send.

    .venv/bin/python bench/bench_send.py [--sizes 100000 1000000] [--modes dry loopback]

Each (size, mode) runs in a fresh child process so its peak RSS is its own
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). ``loopback`` sends through the real sendgrid
client to the loopback SendGrid (``peers/sendgrid_server.py``) running in ANOTHER process
(counts only), with the delivery ledger written and fsynced per batch. Reported per run:
requests (must be ceil(N/1000), checked against what the server accepted), wall time (target
for 1,000,000: under 60 s), peak RSS (target: under 150 MB), and calls to ``Composer.compose`` and
``premailer.transform`` during the send (0: the issue is composed once, before, whatever N).
The list is written straight in the subscriber-list format (sorted, one row per reader).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def write_list(folder: Path, count: int) -> None:
    from crusader_mail.storage.files.list_format import HEADER, MARKER

    folder.mkdir(parents=True, exist_ok=True)
    stamp = "2026-11-01T00:00:00Z"
    with (folder / "subscribers.csv").open("w", encoding="utf-8") as out:
        out.write(f"{MARKER}\n{HEADER}\n")
        for index in range(count):
            out.write(
                f"r{index:07d}@example.com,Reader {index},active,{stamp},import,"
                f"{stamp},import,,,,{stamp}\n"
            )


def one(size: int, mode: str, folder: Path, url: str | None, key: str | None) -> dict[str, Any]:
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
    options: dict[str, Any] = {"concurrency": 2}
    if url and key:
        options.update(api_url=url, api_key=SecretStr(key))
    settings = bench_settings(folder, **options)
    clock = FixedClock(NOW)
    issue = example_issue(settings)
    store = open_store(settings, clock)
    transport: BatchTransport
    if mode == "loopback":
        transport = SendGridTransport(settings, clock, client_factory(settings))
    else:
        transport = DryRunTransport(settings, clock)
    calls["compose"] = calls["premailer"] = 0  # count only what the send does
    started = time.perf_counter()
    report = deliver(issue, store.roster, store.ledgers, transport, settings, clock)
    wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ledger = sum(p.stat().st_size for p in (settings.state_dir / "ledger").glob("*.jsonl"))
    return {
        "size": size,
        "mode": mode,
        "requests": report.requests,
        "delivered": report.delivered,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "compose_calls": calls["compose"],
        "premailer_calls": calls["premailer"],
        "ledger_bytes": ledger,
    }


def run(size: int, mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        folder = Path(tmp)
        write_list(folder / "subscribers", size)
        server = None
        url = key = None
        if mode == "loopback":
            server = subprocess.Popen(
                [sys.executable, "-m", "peers.sendgrid_server", "--no-record"],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert server.stdin is not None
            assert server.stdout is not None
            port = int(server.stdout.readline().split()[1])
            url, key = f"http://127.0.0.1:{port}", "SG.loopback-test-key"
        try:
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(size), mode, tmp, url or "", key or ""],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
            if server is not None:
                assert server.stdin is not None
                assert server.stdout is not None
                server.stdin.write("stats\n")
                server.stdin.flush()
                stats = json.loads(server.stdout.readline())
                result["server_requests"] = stats["requests"]
                result["server_recipients"] = stats["recipients"]
        finally:
            if server is not None and server.stdin is not None:
                server.stdin.close()
                server.wait(timeout=30)
                if server.stdout is not None:
                    server.stdout.close()
    expected = math.ceil(size / 1000)
    result["requests_ok"] = (
        result["requests"] == expected and result.get("server_requests", expected) == expected
    )
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        size, mode, folder, url, key = sys.argv[2:7]
        print(json.dumps(one(int(size), mode, Path(folder), url or None, key or None)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=["dry", "loopback"])
    args = parser.parse_args()
    header = (
        f"{'readers':>9} {'mode':>8} {'requests':>8} {'ok':>3} {'wall s':>7} "
        f"{'peak MB':>8} {'compose':>7} {'premailer':>9} {'ledger MB':>9}"
    )
    print(header)
    for size in args.sizes:
        for mode in args.modes:
            r = run(size, mode)
            print(
                f"{r['size']:>9,} {r['mode']:>8} {r['requests']:>8,} "
                f"{'yes' if r['requests_ok'] else 'NO':>3} {r['wall_s']:>7} "
                f"{r['peak_rss_mb']:>8} {r['compose_calls']:>7} {r['premailer_calls']:>9} "
                f"{r['ledger_bytes'] / 1e6:>9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
