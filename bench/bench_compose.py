"""Compose one issue (3 posts) against a 5,000-post synthetic archive; premailer runs once.

    .venv/bin/python bench/bench_compose.py [--archive 5000] [--repeat 5]

Prints the time of choose_related + Composer.compose (target: under 1 s on this machine), then
composes one issue and fills in the per-reader values for 10, 1,000 and 100,000 readers (what
the sender's substitutions do), counting calls to premailer's transform: it stays 1.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import premailer  # noqa: E402

from bench.inputs import bench_settings  # noqa: E402
from crusader_mail.compose.composer import Composer, fill_placeholders  # noqa: E402
from crusader_mail.compose.related import choose_related  # noqa: E402
from crusader_mail.models import Placeholder, Post  # noqa: E402

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
TOPICS = ["pricing", "hiring", "email", "clients", "marketing", "finance", "sales", "tools"]


def synthetic_posts(count: int, seed: int = 1) -> list[Post]:
    rng = random.Random(seed)
    vocabulary = [f"w{n}" for n in range(5000)]
    zipf = [1 / rank for rank in range(1, len(vocabulary) + 1)]  # word frequencies as in prose
    posts = []
    for n in range(count):
        topic = TOPICS[n % len(TOPICS)]
        words = rng.choices(vocabulary, weights=zipf, k=350) + [topic] * 8
        rng.shuffle(words)
        paragraphs = "".join(
            "<p>" + " ".join(words[i : i + 50]) + "</p>" for i in range(0, len(words), 50)
        )
        published = NOW - timedelta(hours=6 * n + 1)
        posts.append(
            Post(
                id=f"https://blog.example/p/{n}",
                title=f"{topic.title()} lesson {n}: {' '.join(rng.sample(vocabulary, 4))}",
                link=f"https://blog.example/p/{n}/",
                published=published,
                updated=published,
                author="Bench",
                categories=(topic,),
                tags=tuple(rng.sample(TOPICS, 2)),
                summary_html=paragraphs,
                content_html=paragraphs,
                excerpt=" ".join(words[:55]) + " […]",
                feed="https://blog.example/feed",
                first_seen=published,
            )
        )
    return posts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    posts = synthetic_posts(args.archive + 3)
    issue_posts, archive = posts[:3], posts[3:]
    settings = bench_settings(Path(tempfile.gettempdir()) / "bench-compose")  # nothing is written
    timings, related_times = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        related = choose_related(issue_posts, archive, (), settings.compose.related_count)
        middle = time.perf_counter()
        issue = Composer(settings).compose(issue_posts, related, "bench", NOW)
        end = time.perf_counter()
        timings.append(end - start)
        related_times.append(middle - start)
    print(
        f"archive: {len(archive)} posts; issue: 3 posts, {len(related)} related, "
        f"{issue.html_bytes:,} bytes HTML"
    )
    print(
        f"compose (choose_related + Composer.compose), {args.repeat} runs: "
        f"median {statistics.median(timings):.3f} s, min {min(timings):.3f} s "
        f"(choose_related alone: median {statistics.median(related_times):.3f} s)"
    )

    calls = 0
    original = premailer.Premailer.transform

    def counting(self: object, *a: object, **k: object) -> str:
        nonlocal calls
        calls += 1
        return original(self, *a, **k)  # type: ignore[arg-type]

    premailer.Premailer.transform = counting  # type: ignore[method-assign]
    try:
        issue = Composer(settings).compose(issue_posts, related, "bench", NOW)
        for readers in (10, 1_000, 100_000):
            start = time.perf_counter()
            for n in range(readers):
                values = {
                    Placeholder.EMAIL: f"reader{n}@example.com",
                    Placeholder.UNSUBSCRIBE_URL: f"https://news.example/u?t={n:029d}",
                    Placeholder.NAME: "",
                }
                fill_placeholders(issue.html, values, html=True)
            took = time.perf_counter() - start
            print(
                f"{readers:>7,} readers filled in {took:.2f} s: premailer transform calls = {calls}"
            )
    finally:
        premailer.Premailer.transform = original  # type: ignore[method-assign]
    return 0 if calls == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
