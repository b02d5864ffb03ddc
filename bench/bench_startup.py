"""Start-up time of the command line, each run a fresh process.

    .venv/bin/python bench/bench_startup.py [--runs 15]

Times ``crusader-mail --help`` (target: under 0.3 s), ``--version`` and ``subscribers --help``
(a command's own help loads that command and the settings, not the composer), wall time of the
whole process from ``subprocess.run``; medians and the slowest run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "crusader-mail"
TARGET = 0.3  # seconds, crusader-mail --help
COMMANDS = (("--help",), ("--version",), ("subscribers", "--help"))


def timed(argv: tuple[str, ...]) -> float:
    started = time.perf_counter()
    subprocess.run([str(CLI), *argv], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    timed(("--help",))  # warm the page cache and the .pyc files
    for argv in COMMANDS:
        times = [timed(argv) for _ in range(runs)]
        name = "crusader-mail " + " ".join(argv)
        target = f"target < {TARGET:.1f} s" if argv == ("--help",) else ""
        print(
            f"{name:<34} median {statistics.median(times):.3f} s  "
            f"max {max(times):.3f} s  ({runs} runs)  {target}".rstrip()
        )


if __name__ == "__main__":
    main()
