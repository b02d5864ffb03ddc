"""Start-up time of the command line, each run a fresh process.

    .venv/bin/python bench/bench_startup.py [--runs 15]

Times ``crusader-mail --help``, ``--version`` and ``subscribers --help`` (a command's own help
loads that command and the settings, not the composer), wall time of the whole process from
``subprocess.run``. Ends with the figures (``bench/report.py``): each command's median and
slowest run; the median of ``--help`` beside its target (under 0.3 s), the others without one.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import Figure, against, measured, print_figures  # noqa: E402

CLI = REPO / ".venv" / "bin" / "crusader-mail"
TARGET = 0.3  # seconds, crusader-mail --help
COMMANDS = (("--help",), ("--version",), ("subscribers", "--help"))


def timed(argv: tuple[str, ...]) -> float:
    started = time.perf_counter()
    subprocess.run([str(CLI), *argv], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --runs 3",
    )
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    timed(("--help",))  # warm the page cache and the .pyc files
    figures: list[Figure] = []
    for argv in COMMANDS:
        times = [timed(argv) for _ in range(runs)]
        name = "crusader-mail " + " ".join(argv)
        median = statistics.median(times)
        figures.append(
            against(f"{name}, median", median, "<", TARGET, "s", digits=3)
            if argv == ("--help",)
            else measured(f"{name}, median", median, "s", digits=3)
        )
        figures.append(measured(f"{name}, slowest", max(times), "s", digits=3))
    print_figures(f"bench_startup.py (fresh processes, {runs} runs each)", figures)


if __name__ == "__main__":
    main()
