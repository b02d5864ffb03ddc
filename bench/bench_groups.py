"""One send to 100,000 readers in four preference groups, against the loopback SendGrid peer.

Groups (a quarter each): readers who chose nothing; readers paused; readers whose topics the
issue touches; readers whose topics it does not. The issue (the three newest posts of the
bundled feed) is composed once; the send reads the preferences once
(``Roster.preferences``), makes the issue's audience (``delivery.audience``) and delivers
through the ledger. Printed beside what they must be: compose count (= distinct issues: 1),
requests (= ceil(readers who get it / 1000)), readers delivered, and the wall time of the send.

    .venv/bin/python -m bench.bench_groups [--readers 100000]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from peers.sendgrid_server import SendGridServer
from pydantic import SecretStr

from bench.bench_send import NOW, reader, write_list
from bench.inputs import EXAMPLE_FEED, bench_settings
from bench.report import against, measured, print_figures
from crusader_mail.clock import FixedClock
from crusader_mail.compose import composer
from crusader_mail.delivery.audience import audience, issue_topics
from crusader_mail.delivery.client import client_factory
from crusader_mail.delivery.engine import deliver
from crusader_mail.delivery.transport import SendGridTransport
from crusader_mail.feeds.fetch import make_client
from crusader_mail.feeds.read import read_feed
from crusader_mail.models import Frequency, Preferences
from crusader_mail.storage import open_store
from crusader_mail.storage.files.preferences import PreferenceFile

BATCH = 1000


def groups(count: int, touched: str) -> dict[str, Preferences]:
    """The preferences of readers 1, 2 and 3 of every four (reader 0 chose nothing)."""
    paused = Preferences(paused_until=NOW.replace(year=NOW.year + 1))
    inside = Preferences(frequency=Frequency.WEEKLY, topics=(touched,))
    outside = Preferences(topics=("Nothing The Issue Touches",))
    chosen: dict[str, Preferences] = {}
    for index in range(count):
        kind = index % 4
        if kind:
            chosen[reader(index)[0]] = (paused, inside, outside)[kind - 1]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SendGridServer(record=False) as peer:
        folder = Path(tmp)
        settings = bench_settings(folder, api_url=peer.url, api_key=SecretStr(peer.api_key))
        write_list(settings.subscribers_dir, args.readers)
        clock = FixedClock(NOW)
        with make_client(settings.fetch) as client:
            read = read_feed(str(EXAMPLE_FEED), client, settings.fetch, None, clock)
        ordered = sorted(read.posts, key=lambda post: post.published, reverse=True)
        posts, related = ordered[:3], ordered[3:6]
        touched = sorted(issue_topics(posts))[0]
        PreferenceFile(settings.subscribers_dir).save(groups(args.readers, touched))
        calls = {"compose": 0}
        real = composer.Composer.compose

        def counted(*given: Any, **named: Any) -> Any:
            calls["compose"] += 1
            return real(*given, **named)

        composer.Composer.compose = counted  # type: ignore[method-assign]
        store = open_store(settings, clock)
        started = time.perf_counter()
        issue = composer.Composer(settings).compose(posts, related, "2026-11-23-groups00", NOW)
        who = audience(store.roster.preferences(), posts, clock.now())
        transport = SendGridTransport(settings, clock, client_factory(settings))
        report = deliver(
            issue, store.roster, store.ledgers, transport, settings, clock, audience=who
        )
        wall = time.perf_counter() - started
        store.close()
    getting = sum(1 for index in range(args.readers) if index % 4 in (0, 2))
    print(f"{args.readers:,} readers, four groups; skipped: {report.skipped}")
    print_figures(
        f"bench_groups.py ({args.readers:,} readers, four preference groups)",
        [
            against("compose count (distinct issues)", calls["compose"], "=", 1, digits=0),
            against("requests", report.requests, "=", math.ceil(getting / BATCH), digits=0),
            against("readers delivered", report.delivered, "=", getting, digits=0),
            against(
                "readers paused", report.skipped.get("paused", 0), "=", args.readers // 4, digits=0
            ),
            measured("wall time of the send", wall, "s"),
        ],
    )


if __name__ == "__main__":
    main()
