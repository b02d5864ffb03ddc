"""A run's send to 100,000 readers in four preference groups, against the loopback SendGrid peer.

Groups (a quarter each, ``cadence.mode = "digest"``): readers who chose nothing (the digest of
the bundled feed's three newest posts); every-post readers (an issue per post); weekly readers
with a topic that picks some of the digest's posts (the weekly digest is the editor's here:
the variant of those posts); paused readers (nothing). The run's plans are made as ``run``
makes them (``compose.planning.plan_run`` over an archive where those posts are new, then
``compose.groups.with_groups``) and each issue is delivered through its ledger with its
audience (``compose.groups.plan_audience``). Printed beside what they must be: compose count
(= distinct issues: 1 + 1 variant + 3 per post), requests (= the sum over the issues of
ceil(readers who get it / 1000)), readers delivered, and the wall time of the whole send.

    .venv/bin/python bench/bench_groups.py [--readers 100000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peers.sendgrid_server import SendGridServer  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.bench_send import NOW, reader, write_list  # noqa: E402
from bench.inputs import EXAMPLE_FEED, bench_settings  # noqa: E402
from bench.report import against, measured, print_figures  # noqa: E402
from crusader_mail.clock import FixedClock  # noqa: E402
from crusader_mail.compose import composer  # noqa: E402
from crusader_mail.compose.groups import group_label, plan_audience, with_groups  # noqa: E402
from crusader_mail.compose.planning import plan_run  # noqa: E402
from crusader_mail.delivery.audience import issue_topics  # noqa: E402
from crusader_mail.delivery.client import client_factory  # noqa: E402
from crusader_mail.delivery.engine import deliver  # noqa: E402
from crusader_mail.delivery.transport import SendGridTransport  # noqa: E402
from crusader_mail.feeds.fetch import make_client  # noqa: E402
from crusader_mail.feeds.read import read_feed  # noqa: E402
from crusader_mail.models import Frequency, Post, Preferences  # noqa: E402
from crusader_mail.storage import open_store  # noqa: E402
from crusader_mail.storage.archive import Archive  # noqa: E402
from crusader_mail.storage.files.preferences import PreferenceFile  # noqa: E402

BATCH = 1000
POSTS = 3


def groups(count: int, topic: str) -> dict[str, Preferences]:
    """The preferences of readers 1, 2 and 3 of every four (reader 0 chose nothing)."""
    every_post = Preferences(frequency=Frequency.EVERY_POST)
    weekly_topic = Preferences(frequency=Frequency.WEEKLY, topics=(topic,))
    paused = Preferences(paused_until=NOW.replace(year=NOW.year + 1))
    chosen: dict[str, Preferences] = {}
    for index in range(count):
        kind = index % 4
        if kind:
            chosen[reader(index)[0]] = (every_post, weekly_topic, paused)[kind - 1]
    return chosen


def some_topic(posts: Sequence[Post]) -> str:
    """A topic of some of ``posts`` but not all (its readers get a variant)."""
    for topic in sorted(issue_topics(posts)):
        having = sum(1 for post in posts if topic in issue_topics([post]))
        if 0 < having < len(posts):
            return topic
    raise SystemExit("the example feed's newest posts share all their topics: no variant")


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
        archive = Archive()
        archive.merge(read.posts, NOW)  # a feed's first sight: all backlog
        archive.release_backlog(POSTS)  # the three newest are new
        newest = archive.posts[:POSTS]
        PreferenceFile(settings.subscribers_dir).save(groups(args.readers, some_topic(newest)))
        calls = {"compose": 0}
        real = composer.Composer.compose

        def counted(*given: Any, **named: Any) -> Any:
            calls["compose"] += 1
            return real(*given, **named)

        composer.Composer.compose = counted  # type: ignore[method-assign]
        store = open_store(settings, clock)
        reports = []
        started = time.perf_counter()
        chosen = cache(store.roster.preferences)  # once a run, as run reads them
        plans = with_groups(
            plan_run(archive, settings, clock), archive, chosen, settings, clock, record=False
        )
        for plan in plans:
            who = plan_audience(plan, chosen(), settings, clock.now())
            transport = SendGridTransport(settings, clock, client_factory(settings))
            sent = deliver(
                plan.issue, store.roster, store.ledgers, transport, settings, clock, audience=who
            )
            reports.append((group_label(plan), sent))
        wall = time.perf_counter() - started
        store.close()
    quarter = [sum(1 for index in range(args.readers) if index % 4 == kind) for kind in range(4)]
    default, every_post, weekly_topic, paused = quarter
    # the digest, its variant, an issue per post: each to its group
    getting = [default, weekly_topic, *[every_post] * POSTS]
    for label, sent in reports:
        print(f"{label}: {sent.delivered:,} delivered in {sent.requests} requests")
    print(f"the digest's skipped: {reports[0][1].skipped}")
    print_figures(
        f"bench_groups.py ({args.readers:,} readers, four preference groups, one run's send)",
        [
            against(
                "compose count (distinct issues)", calls["compose"], "=", len(getting), digits=0
            ),
            against(
                "requests",
                sum(sent.requests for _, sent in reports),
                "=",
                sum(math.ceil(group / BATCH) for group in getting),
                digits=0,
            ),
            against(
                "readers delivered",
                sum(sent.delivered for _, sent in reports),
                "=",
                sum(getting),
                digits=0,
            ),
            against(
                "readers paused", reports[0][1].skipped.get("paused", 0), "=", paused, digits=0
            ),
            measured(f"wall time of the send ({len(reports)} issues)", wall, "s"),
        ],
    )


if __name__ == "__main__":
    main()
