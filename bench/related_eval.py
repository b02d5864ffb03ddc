"""How related are the related posts? Judged on a real blog archive (PyBites, 393 posts).

    .venv/bin/python bench/related_eval.py [--corpus ../shared/corpus]

Truth labels: the all-posts feed's <category> elements are the post's TAGS; its CATEGORIES are
the per-category feeds (archive/pybites-categories/) that list it, matched by link. For every
post, 3 related posts are chosen from all the others, and the script reports the share of
chosen posts that share a category or a tag with it, for:

- ranking            choose_related with categories and tags visible
- tags hidden        choose_related with tags removed (categories still visible)
- text only          choose_related with tags and categories removed
- most recent        simply the 3 newest other posts (what a blog without ranking shows)
- chance             the share of all other posts that share a label (a random pick)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import feedparser

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from crusader_mail.clock import FixedClock  # noqa: E402
from crusader_mail.compose.related import choose_related  # noqa: E402
from crusader_mail.feeds.fetch import make_client  # noqa: E402
from crusader_mail.feeds.read import read_feed  # noqa: E402
from crusader_mail.models import Post  # noqa: E402
from crusader_mail.settings import FetchSettings  # noqa: E402

ALL_FEED = "archive/pybites_pybites.github.io__feeds_all.rss.xml"
CATEGORY_DIR = "archive/pybites-categories"
PREFIX = "pybites_pybites.github.io__feeds_"


def load(corpus: Path) -> list[Post]:
    settings = FetchSettings()
    clock = FixedClock(datetime(2026, 11, 23, tzinfo=UTC))
    with make_client(settings) as client:
        outcome = read_feed(str(corpus / ALL_FEED), client, settings, None, clock)
    if outcome.report.status != "ok":
        raise SystemExit(f"{ALL_FEED}: {outcome.report.error}")
    categories: dict[str, set[str]] = {}
    for path in sorted((corpus / CATEGORY_DIR).glob("*.xml")):
        name = path.name.removeprefix(PREFIX).removesuffix(".rss.xml")
        for entry in feedparser.parse(path.read_bytes()).entries:
            categories.setdefault(entry.get("link", ""), set()).add(name)
    return [
        post.model_copy(
            update={
                "tags": tuple(post.categories) + tuple(post.tags),
                "categories": tuple(sorted(categories.get(post.link, ()))),
            }
        )
        for post in outcome.posts
    ]


def shares(a: Post, b: Post) -> bool:
    tags_a = {t.casefold() for t in a.tags}
    return bool(set(a.categories) & set(b.categories)) or any(
        t.casefold() in tags_a for t in b.tags
    )


Chooser = Callable[[Post, Sequence[Post]], list[Post]]


def evaluate(posts: list[Post], chooser: Chooser) -> tuple[float, float, float]:
    """(share of chosen posts sharing a label, share of posts with >= 1 such, seconds)."""
    good = total = hit_posts = 0
    start = time.perf_counter()
    for post in posts:
        others = [p for p in posts if p.id != post.id]
        chosen = chooser(post, others)
        matched = sum(shares(post, c) for c in chosen)
        good += matched
        total += len(chosen)
        hit_posts += matched > 0
    return good / total, hit_posts / len(posts), time.perf_counter() - start


def strip(post: Post, tags: bool, categories: bool) -> Post:
    update: dict[str, object] = {}
    if tags:
        update["tags"] = ()
    if categories:
        update["categories"] = ()
    return post.model_copy(update=update)


def ranked(tags_hidden: bool = False, categories_hidden: bool = False) -> Chooser:
    def choose(post: Post, others: Sequence[Post]) -> list[Post]:
        if not (tags_hidden or categories_hidden):
            return choose_related([post], others, (), 3)
        hidden = {p.id: p for p in others}
        view = [strip(p, tags_hidden, categories_hidden) for p in others]
        chosen = choose_related([strip(post, tags_hidden, categories_hidden)], view, (), 3)
        return [hidden[p.id] for p in chosen]

    return choose


def most_recent(post: Post, others: Sequence[Post]) -> list[Post]:
    return sorted(others, key=lambda p: (p.published, p.id), reverse=True)[:3]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    args = parser.parse_args()
    posts = load(args.corpus)
    with_category = sum(1 for p in posts if p.categories)
    print(
        f"PyBites: {len(posts)} posts, {with_category} with a category, "
        f"{len({t.casefold() for p in posts for t in p.tags})} distinct tags"
    )
    chance = sum(
        sum(shares(p, o) for o in posts if o.id != p.id) / (len(posts) - 1) for p in posts
    ) / len(posts)
    rows = [
        ("ranking (categories + tags)", ranked()),
        ("ranking, tags hidden", ranked(tags_hidden=True)),
        ("ranking, text only", ranked(tags_hidden=True, categories_hidden=True)),
        ("3 most recent other posts", most_recent),
    ]
    print(f"{'chooser':<30} {'related share a label':>22} {'posts with >=1':>15} {'time':>8}")
    for name, chooser in rows:
        share, any_hit, took = evaluate(posts, chooser)
        print(f"{name:<30} {share:>21.1%} {any_hit:>15.1%} {took:>7.2f}s")
    print(f"{'chance (random other post)':<30} {chance:>21.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
