"""How related are the related posts? Judged on real blog archives, tags kept and stripped.

    .venv/bin/python bench/related_eval.py [--corpus ../shared/corpus]
                                            [--archives ../shared/related-archives] [--only NAME]

The archives are read in place (never copied into the repository); one that is absent is
skipped. ``../shared/related-archives/SOURCES.md`` says where each file there comes from.

Truth: a related post is right when it shares a category or a tag with the post (the feed's
labels, case folded; WordPress's "Uncategorized" is no label; PyBites: the all-posts feed's
labels plus the per-category feeds that list the post). Every post with a label is judged: 3
related posts are chosen for it from all the other posts, and the figure is the share of chosen
posts that share a label with it. "Tags stripped" removes every category and tag from the posts
the chooser sees; the labels only judge the result.

- ranking        what ``choose_related`` does (``RelatedIndex.choose``, built once per archive)
- TF-IDF cosine  plain TF-IDF over title + text (raw counts, smooth idf, l2 norm, the tokens of
                 ``tokenize``), the 3 most similar posts; text only, so the same both ways
- 3 newest       the 3 newest posts published before the post (what a blog without ranking
                 shows under it; the oldest posts take the next ones after them)
- chance         the share of all other posts that share a label (a random pick)
- best possible  the share when every choice shares a label wherever 3 such posts exist

Targets: tags kept >= 0.95; tags stripped >= 0.70 and never below TF-IDF cosine.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import feedparser

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from crusader_mail.clock import FixedClock  # noqa: E402
from crusader_mail.compose.related import RelatedIndex, tokenize  # noqa: E402
from crusader_mail.feeds.fetch import make_client  # noqa: E402
from crusader_mail.feeds.read import read_feed  # noqa: E402
from crusader_mail.models import Post  # noqa: E402
from crusader_mail.settings import FetchSettings  # noqa: E402
from crusader_mail.util.html_text import html_words  # noqa: E402

COUNT = 3
KEPT_TARGET = 0.95
STRIPPED_TARGET = 0.70
NO_LABEL = frozenset({"uncategorized", "uncategorised"})


@dataclass(frozen=True)
class Archive:
    name: str
    shape: str
    root: str  # "corpus" or "archives": which folder ``path`` is in
    path: str
    kind: str = "feed"  # "feed", "pybites" (feed + per-category feeds), "jekyll" (_posts folder)


ARCHIVES = (
    Archive(
        "PyBites",
        "summaries only (median 118 characters), many tags",
        "corpus",
        "archive/pybites_pybites.github.io__feeds_all.rss.xml",
        "pybites",
    ),
    Archive(
        "null program",
        "long-form, English, tags",
        "archives",
        "skeeto_skeeto.github.com___posts",
        "jekyll",
    ),
    Archive(
        "notmyidea",
        "long-form, French and English, few labels (5 categories, rare tags)",
        "archives",
        "almet_notmyidea__feeds_all.atom.xml",
    ),
    Archive(
        "X-Wei",
        "non-English (Chinese and English), long-form, categories and tags",
        "archives",
        "X-Wei_x-wei.github.com__feeds_all.atom.xml",
    ),
    Archive(
        "Pythonic Perambulations",
        "mostly short summaries, tags; fits the issue's held-out archive: not tuned on",
        "archives",
        "jakevdp_jakevdp.github.io__feeds_all.atom.xml",
    ),
    Archive(
        "Siddon's Blog",
        "non-English (Chinese), full content, small (20 posts)",
        "corpus",
        "feeds/siddontang_siddontang.github.com__atom.xml",
    ),
    Archive(
        "dustri.org",
        "few tags, small (25 posts)",
        "corpus",
        "feeds/miniflux_v2__large_rss.xml",
    ),
    Archive(
        "Google Testing Blog",
        "author and series tags, small (25 posts)",
        "corpus",
        "feeds/rbren_rss-parser__many-links.rss",
    ),
    Archive(
        "RSS.com blog",
        "summaries only, few categories (most posts Uncategorized)",
        "corpus",
        "feeds/simplepie_simplepie__feed_rss-2.0_for_file_mock.xml",
    ),
)


# --- loading ----------------------------------------------------------------------------------


def read(path: Path) -> list[Post]:
    settings = FetchSettings()
    clock = FixedClock(datetime(2026, 11, 23, tzinfo=UTC))
    with make_client(settings) as client:
        outcome = read_feed(str(path), client, settings, None, clock)
    if outcome.report.status != "ok":
        raise SystemExit(f"{path}: {outcome.report.error}")
    return outcome.posts


def load_pybites(path: Path) -> list[Post]:
    """The all-posts feed's labels become tags; the per-category feeds listing a post (by
    link) its categories."""
    categories: dict[str, set[str]] = {}
    for feed in sorted((path.parent / "pybites-categories").glob("*.xml")):
        name = feed.name.removeprefix("pybites_pybites.github.io__feeds_")
        for entry in feedparser.parse(feed.read_bytes()).entries:
            categories.setdefault(entry.get("link", ""), set()).add(name.removesuffix(".rss.xml"))
    return [
        post.model_copy(
            update={
                "tags": (*post.categories, *post.tags),
                "categories": tuple(sorted(categories.get(post.link, ()))),
            }
        )
        for post in read(path)
    ]


_FENCE = re.compile(
    r"^(```|~~~).*?^\1[ \t]*$|\{%\s*highlight.*?\{%\s*endhighlight\s*%\}", re.S | re.M
)
_LIQUID = re.compile(r"\{[{%].*?[%}]\}", re.S)
_LINK_DEFINITION = re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\](\([^)]*\)|\[[^\]]*\])")


def _markdown_html(text: str) -> str:
    """Enough of Markdown for judging topics: paragraphs of text; code, images, link targets and
    Liquid tags left out."""
    text = _LINK.sub(
        r"\1", _IMAGE.sub("", _LINK_DEFINITION.sub("", _LIQUID.sub("", _FENCE.sub("", text))))
    )
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.split("\n") if not line.startswith(("    ", "\t"))]
        if any(lines):
            paragraphs.append(f"<p>{html.escape(' '.join(lines), quote=False)}</p>")
    return "".join(paragraphs)


def load_jekyll(folder: Path) -> list[Post]:
    """A Jekyll ``_posts`` folder: front matter title and tags, Markdown or HTML bodies."""
    posts = []
    for path in sorted(folder.iterdir()):
        _, front, body = path.read_text(encoding="utf-8").split("---\n", 2)
        meta = dict(
            line.split(":", 1) for line in front.splitlines() if ":" in line and line[0] != " "
        )
        title = meta.get("title", path.stem).strip().strip("'\"")
        tags = tuple(t.strip() for t in meta.get("tags", "").strip(" []").split(",") if t.strip())
        day = datetime.strptime(path.name[:10], "%Y-%m-%d").replace(tzinfo=UTC)
        content = _LIQUID.sub("", body) if path.suffix == ".html" else _markdown_html(body)
        link = f"https://nullprogram.com/blog/{day:%Y/%m/%d}/{path.stem[11:]}/"
        posts.append(
            Post(
                id=link,
                title=title,
                link=link,
                published=day,
                updated=day,
                tags=tags,
                summary_html=content,
                content_html=content,
                feed=str(folder),
                first_seen=day,
            )
        )
    return posts


def load(archive: Archive, path: Path) -> list[Post]:
    if archive.kind == "pybites":
        return load_pybites(path)
    if archive.kind == "jekyll":
        return load_jekyll(path)
    return read(path)


# --- choosers ---------------------------------------------------------------------------------


def labels(post: Post) -> frozenset[str]:
    every = (label.strip().casefold() for label in (*post.categories, *post.tags))
    return frozenset(label for label in every if label and label not in NO_LABEL)


def stripped(post: Post) -> Post:
    return post.model_copy(update={"categories": (), "tags": ()})


Choices = Callable[[int], list[int]]  # the positions chosen for the post at a position


def ranking(posts: Sequence[Post]) -> Choices:
    index = RelatedIndex(posts)
    position = {post.id: i for i, post in enumerate(posts)}

    def choose(i: int) -> list[int]:
        return [position[p.id] for p in index.choose([posts[i]], posts, (), COUNT)]

    return choose


def tfidf(posts: Sequence[Post]) -> Choices:
    counts = [
        Counter(tokenize(p.title + " " + " ".join(html_words(p.content_html, skip_code=True))))
        for p in posts
    ]
    n = len(posts)
    df = Counter(token for c in counts for token in c)
    idf = {token: math.log((1 + n) / (1 + k)) + 1 for token, k in df.items()}
    vectors = []
    for c in counts:
        weights = {token: k * idf[token] for token, k in c.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        vectors.append({token: w / norm for token, w in weights.items()})

    def choose(i: int) -> list[int]:
        query = vectors[i]
        scores = [
            (
                -sum(w * query[t] for t, w in v.items() if t in query),
                -posts[j].published.timestamp(),
                j,
            )
            for j, v in enumerate(vectors)
            if j != i
        ]
        return [j for *_, j in sorted(scores)[:COUNT]]

    return choose


def newest(posts: Sequence[Post]) -> Choices:
    """The 3 newest posts published before the post (then the oldest after it): the posts an
    issue carrying it would show without ranking, as ``choose_related``'s fallback does."""
    order = sorted(range(len(posts)), key=lambda j: (posts[j].published, posts[j].id), reverse=True)

    def choose(i: int) -> list[int]:
        before = [j for j in order if j != i and posts[j].published <= posts[i].published]
        after = [j for j in reversed(order) if posts[j].published > posts[i].published]
        return (before + after)[:COUNT]

    return choose


# --- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    good: list[int]  # per judged post: how many of its related posts share a label
    picks: int

    @property
    def share(self) -> float:
        return sum(self.good) / self.picks if self.picks else 0.0

    @property
    def error(self) -> float:
        """The standard error of ``share`` (a binomial estimate): what noise alone moves."""
        p = self.share
        return math.sqrt(p * (1 - p) / self.picks) if self.picks else 0.0


def judge(truth: Sequence[frozenset[str]], judged: Sequence[int], choices: Choices) -> Figure:
    good, picks = [], 0
    for i in judged:
        chosen = choices(i)
        picks += len(chosen)
        good.append(sum(bool(truth[i] & truth[j]) for j in chosen))
    return Figure(good, picks)


def chance(truth: Sequence[frozenset[str]], judged: Sequence[int]) -> float:
    n = len(truth)
    per_post = (
        sum(bool(truth[i] & truth[j]) for j in range(n) if j != i) / (n - 1) for i in judged
    )
    return sum(per_post) / len(judged)


def best_possible(truth: Sequence[frozenset[str]], judged: Sequence[int]) -> float:
    n = len(truth)
    per_post = (
        min(COUNT, sum(bool(truth[i] & truth[j]) for j in range(n) if j != i)) for i in judged
    )
    return sum(per_post) / (COUNT * len(judged))


def verdict(value: float, target: float, ceiling: float) -> str:
    if value >= target:
        return f">= {target:.2f} ok"
    if ceiling < target and value >= ceiling - 1e-9:
        return f">= {target:.2f} unreachable (at best possible)"
    return f">= {target:.2f} MISSED"


def evaluate(archive: Archive, posts: list[Post]) -> tuple[str, str]:
    """Print one archive's figures; the verdicts (tags kept, tags stripped)."""
    truth = [labels(p) for p in posts]
    judged = [i for i, t in enumerate(truth) if t]
    bare = [stripped(p) for p in posts]
    kept = judge(truth, judged, ranking(posts))
    text_only = judge(truth, judged, ranking(bare))
    baseline = judge(truth, judged, tfidf(bare))
    recency = judge(truth, judged, newest(posts))
    random_pick, ceiling = chance(truth, judged), best_possible(truth, judged)
    better = sum(a > b for a, b in zip(text_only.good, baseline.good, strict=True))
    worse = sum(a < b for a, b in zip(text_only.good, baseline.good, strict=True))
    print(
        f"\n{archive.name}: {len(posts)} posts, {len(judged)} judged (with a label), "
        f"{len(set().union(*truth))} labels; {archive.shape}"
    )
    print(f"  {'chooser':<28} {'tags kept':>10}  {'tags stripped':>13}")
    kept_verdict = verdict(kept.share, KEPT_TARGET, ceiling)
    stripped_verdict = verdict(text_only.share, STRIPPED_TARGET, ceiling)
    vs_tfidf = "ok" if text_only.share >= baseline.share else "MISSED"
    print(
        f"  {'ranking (choose_related)':<28} {kept.share:>10.3f}  {text_only.share:>13.3f}"
        f"   (+-{text_only.error:.3f}: {text_only.picks} picks)"
    )
    print(f"  {'TF-IDF cosine (title+text)':<28} {baseline.share:>10.3f}  {baseline.share:>13.3f}")
    print(f"  {'3 newest before it':<28} {recency.share:>10.3f}  {recency.share:>13.3f}")
    print(f"  {'chance (random other post)':<28} {random_pick:>10.3f}  {random_pick:>13.3f}")
    print(f"  {'best possible':<28} {ceiling:>10.3f}  {ceiling:>13.3f}")
    print(f"  tags kept: {kept.share:.3f} {kept_verdict}")
    print(
        f"  tags stripped: {text_only.share:.3f} {stripped_verdict}; >= TF-IDF {vs_tfidf} "
        f"(per post: better than TF-IDF on {better}, worse on {worse})"
    )
    return kept_verdict, f"{stripped_verdict}; >= TF-IDF {vs_tfidf}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument(
        "--archives", type=Path, default=REPO.parent / "shared" / "related-archives"
    )
    parser.add_argument("--only", action="append", help="an archive's name (repeatable)")
    args = parser.parse_args()
    roots = {"corpus": args.corpus, "archives": args.archives}
    met: list[tuple[str, str, str]] = []
    for archive in ARCHIVES:
        if args.only and archive.name not in args.only:
            continue
        path = roots[archive.root] / archive.path
        if not path.exists():
            print(f"\n{archive.name}: skipped, {path} is absent")
            continue
        kept_verdict, stripped_verdict = evaluate(archive, load(archive, path))
        met.append((archive.name, kept_verdict, stripped_verdict))
    print(f"\n{'archive':<26} {'tags kept':<40} tags stripped")
    for name, kept_verdict, stripped_verdict in met:
        print(f"{name:<26} {kept_verdict:<40} {stripped_verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
