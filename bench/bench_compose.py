"""Compose one issue (3 posts) against a 5,000-post archive; premailer runs once.

    .venv/bin/python bench/bench_compose.py [--archive 5000] [--repeat 5]
                                            [--realistic [NAME]] [--archives DIR] [--corpus DIR]

The archive is synthetic (350 Zipf-distributed words a post), or with ``--realistic`` a real
blog's posts read in place by ``bench/related_eval.py``'s loaders (default: null program, 461
long-form posts, about 1,000 words each) repeated, each copy with its own id, link and date,
until there are 5,000. Prints the time of choose_related + Composer.compose, the first run's
(nothing cached anywhere: every run starts from the posts) and the median, wall clock and CPU
(target: under 1 s; on a machine busy with other work, wall includes waiting for a core, so
compare CPU), then composes one issue and fills in the per-reader values for 10, 1,000
and 100,000 readers (what the sender's substitutions do), counting calls to premailer's
transform: it stays 1. Ends with the figures, each beside its target (``bench/report.py``).
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

from bench import related_eval  # noqa: E402
from bench.inputs import bench_settings  # noqa: E402
from bench.report import Figure, against, measured, print_figures  # noqa: E402
from crusader_mail.compose.composer import Composer, fill_placeholders  # noqa: E402
from crusader_mail.compose.ranking import post_words  # noqa: E402
from crusader_mail.compose.related import choose_related  # noqa: E402
from crusader_mail.models import Placeholder, Post  # noqa: E402
from crusader_mail.settings import Settings  # noqa: E402

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


def realistic_posts(count: int, name: str, roots: dict[str, Path]) -> list[Post]:
    """``count`` posts: the real archive ``name``'s posts (newest first) again and again, each
    copy older than the one before and with its own id and link."""
    archive = next(a for a in related_eval.ARCHIVES if a.name == name)
    real = related_eval.load(archive, roots[archive.root] / archive.path)
    real.sort(key=lambda post: post.published, reverse=True)
    span = real[0].published - real[-1].published + timedelta(days=1)
    posts = []
    for n in range(count):
        post, copy = real[n % len(real)], n // len(real)
        published = post.published - span * copy
        posts.append(
            post.model_copy(
                update={
                    "id": f"{post.id}#{copy}",
                    "link": f"{post.link}#{copy}",
                    "published": published,
                    "updated": published,
                    "first_seen": published,
                }
            )
        )
    return posts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="quick check: --archive 500 --repeat 2",
    )
    parser.add_argument("--archive", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--realistic", nargs="?", const="null program", metavar="NAME")
    parser.add_argument("--archives", type=Path, default=REPO.parent / "shared/related-archives")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/corpus")
    args = parser.parse_args()
    if args.realistic:
        roots = {"corpus": args.corpus, "archives": args.archives}
        posts = realistic_posts(args.archive + 3, args.realistic, roots)
        words = sum(len(post_words(post)) for post in posts)
        shape = f"{args.realistic} repeated, {words / len(posts):,.0f} words a post"
    else:
        posts, shape = synthetic_posts(args.archive + 3), "synthetic"
    issue_posts, archive = posts[:3], posts[3:]
    settings = bench_settings(Path(tempfile.gettempdir()) / "bench-compose")  # nothing is written
    timings, cpu_timings, related_times = [], [], []
    for _ in range(args.repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        related = choose_related(issue_posts, archive, (), settings.compose.related_count)
        middle = time.perf_counter()
        issue = Composer(settings).compose(issue_posts, related, "bench", NOW)
        timings.append(time.perf_counter() - start)
        cpu_timings.append(time.process_time() - cpu_start)
        related_times.append(middle - start)
    print(
        f"archive: {len(archive)} posts ({shape}); issue: 3 posts, {len(related)} related, "
        f"{issue.html_bytes:,} bytes HTML"
    )
    size = f"{len(archive):,}-post archive"
    figures = [
        against(f"compose, first run, wall ({size})", timings[0], "<", 1, "s", digits=3),
        measured(f"compose, first run, CPU ({size})", cpu_timings[0], "s", digits=3),
        against(
            f"compose, median of {args.repeat}, wall ({size})",
            statistics.median(timings),
            "<",
            1,
            "s",
            digits=3,
        ),
        measured(
            f"compose, median of {args.repeat}, CPU ({size})",
            statistics.median(cpu_timings),
            "s",
            digits=3,
        ),
        measured(
            f"choose_related alone, median of {args.repeat}",
            statistics.median(related_times),
            "s",
            digits=3,
        ),
    ]
    figures += premailer_once(settings, issue_posts, related)
    print_figures(f"bench_compose.py ({shape})", figures)
    return 0


def premailer_once(settings: Settings, posts: list[Post], related: list[Post]) -> list[Figure]:
    """Compose once and fill in 10, 1,000 and 100,000 readers' values: the time each fill-in
    takes, and premailer's transform calls so far (the target: 1, the compose's)."""
    figures = []
    calls = 0
    original = premailer.Premailer.transform

    def counting(self: object, *a: object, **k: object) -> str:
        nonlocal calls
        calls += 1
        return original(self, *a, **k)  # type: ignore[arg-type]

    premailer.Premailer.transform = counting  # type: ignore[method-assign]
    try:
        issue = Composer(settings).compose(posts, related, "bench", NOW)
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
            figures.append(measured(f"{readers:,} readers filled in", took, "s"))
            figures.append(
                against(
                    f"premailer transform calls after {readers:,} readers", calls, "=", 1, digits=0
                )
            )
    finally:
        premailer.Premailer.transform = original  # type: ignore[method-assign]
    return figures


if __name__ == "__main__":
    sys.exit(main())
